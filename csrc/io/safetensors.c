#define _POSIX_C_SOURCE 200809L
#include "io/safetensors.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

int lf_safetensors_header(const lf_mapped_file *file, const char *path, size_t *header_len) {
    if (file->size < 8)
        return lf_error(LF_EINVAL, "%s: truncated: %zu bytes, too short for the 8-byte header length", path,
                        file->size);
    const unsigned char *p = (const unsigned char *)file->data;
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = (n << 8) | p[i];
    if (n > file->size - 8)
        return lf_error(LF_EINVAL, "%s: header length %llu runs past the end of the file (%zu bytes)", path,
                        (unsigned long long)n, file->size);
    *header_len = (size_t)n;
    return LF_OK;
}

typedef struct span {
    int64_t begin, end;
    size_t index;
} span;

static int span_order(const void *a, const void *b) {
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int check_one(const char *path, size_t data_size, const char *name, int64_t begin, int64_t end,
                     int64_t nbytes) {
    if (begin < 0 || end < begin)
        return lf_error(LF_EINVAL, "%s: tensor '%s': invalid data_offsets [%lld, %lld]", path, name,
                        (long long)begin, (long long)end);
    if ((uint64_t)end > data_size)
        return lf_error(LF_EINVAL,
                        "%s: tensor '%s': data_offsets [%lld, %lld] lie outside the data area (%zu bytes)",
                        path, name, (long long)begin, (long long)end, data_size);
    if (nbytes < 0 || end - begin != nbytes)
        return lf_error(
            LF_EINVAL,
            "%s: tensor '%s': data_offsets [%lld, %lld] hold %lld bytes but its shape and dtype need "
            "%lld (shape/size mismatch)",
            path, name, (long long)begin, (long long)end, (long long)(end - begin), (long long)nbytes);
    return LF_OK;
}

// spans sorted by begin must tile [0, data_size)
static int check_tiling(const char *path, size_t data_size, const char *const *names, const span *s,
                        size_t n) {
    int64_t covered = 0;
    const char *previous = NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i].begin < covered)
            return lf_error(LF_EINVAL, "%s: tensor '%s' at data_offsets [%lld, %lld] overlaps tensor '%s'",
                            path, names[s[i].index], (long long)s[i].begin, (long long)s[i].end, previous);
        if (s[i].begin > covered)
            return lf_error(LF_EINVAL, "%s: bytes [%lld, %lld) of the data area belong to no tensor (a hole)",
                            path, (long long)covered, (long long)s[i].begin);
        covered = s[i].end;
        previous = names[s[i].index];
    }
    if ((uint64_t)covered != data_size)
        return lf_error(LF_EINVAL, "%s: bytes [%lld, %zu) at the end of the data area belong to no tensor",
                        path, (long long)covered, data_size);
    return LF_OK;
}

int lf_safetensors_check_offsets(const char *path, size_t data_size, size_t n, const char *const *names,
                                 const int64_t *begin, const int64_t *end, const int64_t *nbytes) {
    for (size_t i = 0; i < n; i++) {
        int code = check_one(path, data_size, names[i], begin[i], end[i], nbytes[i]);
        if (code != LF_OK) return code;
    }
    span *spans = malloc((n ? n : 1) * sizeof *spans);
    if (spans == NULL) return lf_error(LF_ENOMEM, "%s: cannot allocate the offset table", path);
    for (size_t i = 0; i < n; i++)
        spans[i] = (span){begin[i], end[i], i};
    qsort(spans, n, sizeof *spans, span_order);
    int code = check_tiling(path, data_size, names, spans, n);
    free(spans);
    return code;
}

static int write_all(int fd, const void *data, size_t bytes) {
    const char *p = data;
    while (bytes > 0) {
        ssize_t w = write(fd, p, bytes > (1u << 30) ? (1u << 30) : bytes);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        bytes -= (size_t)w;
    }
    return 0;
}

static int write_contents(int fd, const char *header, size_t header_len, size_t n, const void *const *data,
                          const size_t *nbytes) {
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    if (write_all(fd, prefix, 8) != 0 || write_all(fd, header, header_len) != 0) return -1;
    for (size_t i = 0; i < n; i++)
        if (nbytes[i] > 0 && write_all(fd, data[i], nbytes[i]) != 0) return -1;
    if (fchmod(fd, 0644) != 0 || fsync(fd) != 0) return -1;
    return 0;
}

int lf_safetensors_write(const char *path, const char *header, size_t header_len, size_t n,
                         const void *const *data, const size_t *nbytes) {
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (tmp == NULL) return lf_error(LF_ENOMEM, "%s: cannot allocate a file name", path);
    snprintf(tmp, len + 16, "%s.tmp-XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int err = errno;
        free(tmp);
        return lf_error(LF_EIO, "%s: cannot create a temporary file beside it: %s", path, strerror(err));
    }
    int failed = write_contents(fd, header, header_len, n, data, nbytes);
    int err = errno;
    if (close(fd) != 0 && !failed) {
        failed = 1;
        err = errno;
    }
    if (!failed && rename(tmp, path) != 0) {
        failed = 1;
        err = errno;
    }
    if (failed) unlink(tmp);
    free(tmp);
    return failed ? lf_error(LF_EIO, "%s: cannot write: %s", path, strerror(err)) : LF_OK;
}
