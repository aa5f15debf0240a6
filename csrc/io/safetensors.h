// The safetensors data path. Layout: 8-byte little-endian header length N, N bytes of JSON
// header, then the data area; each tensor's data_offsets [begin, end) are relative to the data
// area, which they must cover exactly (no holes, no overlaps). Python parses the JSON; C checks
// the byte layout, maps the data and writes files.
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "io/mapped_file.h"

// Validates the 8-byte length prefix of a mapped file: the file holds it and the header fits
// inside the file. Sets *header_len (the data area starts at 8 + *header_len).
int lf_safetensors_header(const lf_mapped_file *file, const char *path, size_t *header_len);

// Checks n tensors' [begin[i], end[i]) against a data area of data_size bytes: begin <= end,
// end - begin == nbytes[i] (shape x dtype size), inside the area, no overlap, no hole.
// names[i] appear in the error message, with path.
int lf_safetensors_check_offsets(const char *path, size_t data_size, size_t n, const char *const *names,
                                 const int64_t *begin, const int64_t *end, const int64_t *nbytes);

// Writes header (JSON, already padded) and the n data blocks, back to back, to path atomically:
// a temporary file in the same folder, fsync, rename. On error the temporary file is removed.
int lf_safetensors_write(const char *path, const char *header, size_t header_len, size_t n,
                         const void *const *data, const size_t *nbytes);
