// Error reporting for the C core: a function that fails returns a non-zero code (or NULL)
// and leaves a message, per thread, that the Python binding raises as an exception.
#pragma once

enum {
    LF_OK = 0,
    LF_EINVAL = 1, // a bad argument or value (ValueError)
    LF_EIO = 2,    // a file that cannot be read or written (OSError)
    LF_ENOMEM = 3, // an allocation that failed (MemoryError)
    LF_ECUDA = 4,  // CUDA unavailable or a CUDA call that failed (RuntimeError)
    LF_EINTR = 5,  // interrupted by the user (KeyboardInterrupt)
};

// Sets the calling thread's error message (printf format) and returns code.
int lf_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *lf_error_message(void);
int lf_error_code(void);
void lf_error_clear(void);
