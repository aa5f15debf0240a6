#define _POSIX_C_SOURCE 200809L
#include "io/mapped_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

int lf_map_file(const char *path, lf_mapped_file *file) {
    file->data = NULL;
    file->size = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return lf_error(LF_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        int err = errno;
        close(fd);
        return lf_error(LF_EIO, "%s: not a regular file%s%s", path, err ? ": " : "",
                        err ? strerror(err) : "");
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            close(fd);
            return lf_error(LF_EIO, "%s: cannot mmap %lld bytes: %s", path, (long long)st.st_size,
                            strerror(err));
        }
        file->data = p;
        file->size = (size_t)st.st_size;
    }
    close(fd); // the mapping keeps the file
    return LF_OK;
}

void lf_unmap_file(lf_mapped_file *file) {
    if (file->data != NULL) munmap(file->data, file->size);
    file->data = NULL;
    file->size = 0;
}
