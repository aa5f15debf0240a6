#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char error_message[1024];
static _Thread_local int error_code;

int lf_error(int code, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(error_message, sizeof error_message, fmt, args);
    va_end(args);
    error_code = code;
    return code;
}

const char *lf_error_message(void) { return error_message; }

int lf_error_code(void) { return error_code; }

void lf_error_clear(void) {
    error_message[0] = '\0';
    error_code = LF_OK;
}
