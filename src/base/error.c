#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/base.h"

enum { ERR_BUF = 1024 };
static _Thread_local char err_buf[ERR_BUF];

ty_status
ty_set_error(ty_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, ERR_BUF, fmt, ap);
    va_end(ap);
    return st;
}

void
ty_error_prefix(const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(err_buf, prefix, n) == 0 && err_buf[n] == ':') {
        return; /* already named */
    }
    char tmp[ERR_BUF];
    size_t len = strlen(err_buf);
    if (n + 2 + len >= ERR_BUF) {
        len = ERR_BUF - n - 3 > 0 ? ERR_BUF - n - 3 : 0;
    }
    memcpy(tmp, err_buf, len);
    tmp[len] = '\0';
    if (n + 2 < ERR_BUF) {
        memcpy(err_buf, prefix, n);
        memcpy(err_buf + n, ": ", 2);
        memcpy(err_buf + n + 2, tmp, len + 1);
    }
}

const char *
ty_last_error(void)
{
    return err_buf;
}

void
ty_clear_error(void)
{
    err_buf[0] = '\0';
}

const char *
ty_status_name(ty_status st)
{
    switch (st) {
    case TY_OK: return "ok";
    case TY_ERR_INVALID_ARG: return "invalid argument";
    case TY_ERR_SHAPE: return "shape error";
    case TY_ERR_DTYPE: return "dtype error";
    case TY_ERR_OOM: return "out of memory";
    case TY_ERR_UNSUPPORTED: return "unsupported";
    case TY_ERR_DEVICE: return "device error";
    case TY_ERR_IO: return "I/O error";
    case TY_ERR_FORMAT: return "format error";
    case TY_ERR_INTERNAL: return "internal error";
    case TY_ERR_INDEX: return "index error";
    case TY_ERR_TRACE: return "trace error";
    case TY_ERR_TIMEOUT: return "timeout";
    }
    return "unknown status";
}

const char *
ty_shape_str(int ndim, const int64_t *shape, char *buf, size_t n)
{
    size_t used = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < ndim && used < n; i++) {
        used += (size_t)snprintf(buf + used, n - used, i ? ", %lld" : "%lld", (long long)shape[i]);
    }
    if (used < n) {
        snprintf(buf + used, n - used, ndim == 1 ? ",)" : ")");
    }
    return buf;
}

int
ty_api_version(void)
{
    return TY_API_VERSION;
}

const char *
ty_version(void)
{
    return "0.1.0";
}
