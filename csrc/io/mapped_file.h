// A file mapped into memory copy-on-write: reads come from the page cache on first touch,
// writes go to private pages and never reach the file. A file truncated by another process
// while mapped makes later reads past its new end fault (SIGBUS), as with any mmap.
#pragma once

#include <stddef.h>

typedef struct lf_mapped_file {
    char *data;  // NULL for an empty file
    size_t size; // bytes
} lf_mapped_file;

// Maps the whole of path. LF_EIO naming path and the reason when it cannot be opened or mapped.
int lf_map_file(const char *path, lf_mapped_file *file);
void lf_unmap_file(lf_mapped_file *file);
