/* The strict .npy reader and writer (npy.h). The header is a Python dict literal; we accept
 * exactly the subset NumPy writes: three keys ('descr', 'fortran_order', 'shape'), each once,
 * in any order, a string descr, a bool and a tuple of non-negative ints. */
#include "runtime/npy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/base.h"

static const char NPY_MAGIC[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
enum { NPY_PREFIX_V1 = 10, NPY_PREFIX_V2 = 12, NPY_ALIGN = 64, NPY_MAX_STR = 32 };

static const struct {
    const char *descr;
    ty_dtype dtype;
} NPY_DTYPES[] = {
    {"<f4", TY_FLOAT32}, {"<f8", TY_FLOAT64}, {"<f2", TY_FLOAT16}, {"|i1", TY_INT8},
    {"|u1", TY_UINT8},   {"<i2", TY_INT16},   {"<i4", TY_INT32},   {"<i8", TY_INT64},
    {"|b1", TY_BOOL},
};
enum { NPY_NDTYPES = sizeof NPY_DTYPES / sizeof NPY_DTYPES[0] };

/* A cursor over the header text. */
typedef struct cursor {
    const char *p, *end;
} cursor;

static void
skip_space(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) {
        c->p++;
    }
}

static int
take(cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted string without escapes, at most NPY_MAX_STR - 1 characters, into out. */
static ty_status
parse_string(cursor *c, char *out, const char *what)
{
    skip_space(c);
    TY_CHECK(c->p < c->end && (*c->p == '\'' || *c->p == '"'), TY_ERR_FORMAT,
             "npy: the header's %s is not a quoted string", what);
    char quote = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != quote) {
        TY_CHECK(n + 1 < NPY_MAX_STR && *c->p != '\\', TY_ERR_FORMAT,
                 "npy: the header's %s is too long or holds an escape", what);
        out[n++] = *c->p++;
    }
    TY_CHECK(c->p < c->end, TY_ERR_FORMAT, "npy: the header's %s is not terminated", what);
    c->p++;
    out[n] = '\0';
    return TY_OK;
}

static ty_status
parse_descr(cursor *c, ty_dtype *out)
{
    char s[NPY_MAX_STR];
    TY_TRY(parse_string(c, s, "'descr'"));
    for (int i = 0; i < NPY_NDTYPES; i++) {
        if (strcmp(s, NPY_DTYPES[i].descr) == 0) {
            *out = NPY_DTYPES[i].dtype;
            return TY_OK;
        }
    }
    TY_CHECK(s[0] != '>', TY_ERR_FORMAT, "npy: big-endian dtype '%s' is not supported", s);
    return ty_set_error(TY_ERR_FORMAT,
                        "npy: dtype '%s' is not supported (little-endian f4 f8 f2 i1 u1 i2 i4 "
                        "i8 b1 only)",
                        s);
}

static ty_status
parse_fortran_order(cursor *c)
{
    skip_space(c);
    size_t left = (size_t)(c->end - c->p);
    if (left >= 5 && memcmp(c->p, "False", 5) == 0) {
        c->p += 5;
        return TY_OK;
    }
    TY_CHECK(!(left >= 4 && memcmp(c->p, "True", 4) == 0), TY_ERR_FORMAT,
             "npy: fortran_order True is not supported (C order only)");
    return ty_set_error(TY_ERR_FORMAT, "npy: the header's 'fortran_order' is not False or True");
}

/* A non-negative decimal int no larger than 2^62 (so products are checked one at a time). */
static ty_status
parse_dim(cursor *c, int64_t *out)
{
    skip_space(c);
    const int64_t limit = (int64_t)1 << 62;
    int64_t v = 0;
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        int digit = *c->p++ - '0';
        TY_CHECK(v <= (limit - digit) / 10, TY_ERR_FORMAT,
                 "npy: a dimension of the shape is too large");
        v = v * 10 + digit;
    }
    TY_CHECK(c->p > start, TY_ERR_FORMAT, "npy: the shape holds something other than "
                                          "non-negative integers");
    *out = v;
    return TY_OK;
}

/* "()", "(3,)", "(3, 4)" or "(3, 4,)": a Python tuple. */
static ty_status
parse_shape(cursor *c, ty_npy *arr)
{
    TY_CHECK(take(c, '('), TY_ERR_FORMAT, "npy: the header's 'shape' is not a tuple");
    arr->ndim = 0;
    if (take(c, ')')) {
        return TY_OK;
    }
    for (;;) {
        TY_CHECK(arr->ndim < TY_MAX_DIMS, TY_ERR_FORMAT,
                 "npy: the shape has more than %d dimensions", TY_MAX_DIMS);
        TY_TRY(parse_dim(c, &arr->shape[arr->ndim++]));
        int comma = take(c, ',');
        if (take(c, ')')) {
            TY_CHECK(comma || arr->ndim > 1, TY_ERR_FORMAT,
                     "npy: the header's 'shape' is not a tuple (a one-element tuple needs ',')");
            return TY_OK;
        }
        TY_CHECK(comma, TY_ERR_FORMAT, "npy: the header's 'shape' is not a tuple");
    }
}

enum { KEY_DESCR = 1, KEY_FORTRAN = 2, KEY_SHAPE = 4 };

static ty_status
parse_entry(cursor *c, ty_npy *arr, int *seen)
{
    char key[NPY_MAX_STR];
    TY_TRY(parse_string(c, key, "key"));
    TY_CHECK(take(c, ':'), TY_ERR_FORMAT, "npy: the header's dict lacks ':' after '%s'", key);
    int bit = strcmp(key, "descr") == 0           ? KEY_DESCR
              : strcmp(key, "fortran_order") == 0 ? KEY_FORTRAN
              : strcmp(key, "shape") == 0         ? KEY_SHAPE
                                                  : 0;
    TY_CHECK(bit != 0, TY_ERR_FORMAT, "npy: the header has an unknown key '%s'", key);
    TY_CHECK(!(*seen & bit), TY_ERR_FORMAT, "npy: the header repeats the key '%s'", key);
    *seen |= bit;
    if (bit == KEY_DESCR) {
        return parse_descr(c, &arr->dtype);
    }
    if (bit == KEY_FORTRAN) {
        return parse_fortran_order(c);
    }
    return parse_shape(c, arr);
}

static ty_status
parse_header(const char *text, size_t len, ty_npy *arr)
{
    cursor c = {text, text + len};
    int seen = 0;
    TY_CHECK(take(&c, '{'), TY_ERR_FORMAT, "npy: the header is not a dict");
    while (!take(&c, '}')) {
        TY_TRY(parse_entry(&c, arr, &seen));
        if (!take(&c, ',')) {
            TY_CHECK(take(&c, '}'), TY_ERR_FORMAT, "npy: the header's dict is malformed");
            break;
        }
    }
    skip_space(&c);
    TY_CHECK(c.p == c.end, TY_ERR_FORMAT, "npy: the header has text after its dict");
    TY_CHECK(seen == (KEY_DESCR | KEY_FORTRAN | KEY_SHAPE), TY_ERR_FORMAT,
             "npy: the header lacks '%s'",
             !(seen & KEY_DESCR) ? "descr" : !(seen & KEY_FORTRAN) ? "fortran_order" : "shape");
    return TY_OK;
}

static uint32_t
load_le(const unsigned char *p, int nbytes)
{
    uint32_t v = 0;
    for (int i = nbytes - 1; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* The header's text (after the prefix) and where the data starts. */
static ty_status
parse_prefix(const unsigned char *b, size_t len, size_t *hstart, size_t *hlen)
{
    TY_CHECK(len >= NPY_PREFIX_V1 && memcmp(b, NPY_MAGIC, sizeof NPY_MAGIC) == 0, TY_ERR_FORMAT,
             "npy: not a .npy file (bad magic)");
    int major = b[6], minor = b[7];
    TY_CHECK(major >= 1 && major <= 3 && minor == 0, TY_ERR_FORMAT,
             "npy: format version %d.%d is not supported (1.0, 2.0, 3.0)", major, minor);
    *hstart = major == 1 ? NPY_PREFIX_V1 : NPY_PREFIX_V2;
    TY_CHECK(len >= *hstart, TY_ERR_FORMAT, "npy: the file ends inside its header");
    *hlen = load_le(b + 8, major == 1 ? 2 : 4);
    TY_CHECK(*hlen <= len - *hstart, TY_ERR_FORMAT,
             "npy: the header length %zu runs past the end of the file", *hlen);
    return TY_OK;
}

static ty_status
data_size(const ty_npy *arr, size_t *out)
{
    uint64_t n = ty_dtype_size(arr->dtype);
    for (int i = 0; i < arr->ndim; i++) {
        uint64_t d = (uint64_t)arr->shape[i];
        TY_CHECK(d == 0 || n <= SIZE_MAX / d, TY_ERR_FORMAT, "npy: the shape's size overflows");
        n *= d;
    }
    *out = (size_t)n;
    return TY_OK;
}

static ty_status
check_bools(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        TY_CHECK(p[i] <= 1, TY_ERR_FORMAT, "npy: bool element %zu holds the byte %d (0 or 1 only)",
                 i, p[i]);
    }
    return TY_OK;
}

ty_status
ty_npy_parse(const void *buf, size_t len, ty_npy *out)
{
    TY_CHECK(buf != NULL || len == 0, TY_ERR_INVALID_ARG, "npy: NULL buffer");
    TY_CHECK(out != NULL, TY_ERR_INVALID_ARG, "npy: NULL output");
    memset(out, 0, sizeof *out);
    const unsigned char *b = buf;
    size_t hstart = 0, hlen = 0, nbytes = 0;
    TY_TRY(parse_prefix(b, len, &hstart, &hlen));
    ty_npy arr = {0};
    TY_TRY(parse_header((const char *)b + hstart, hlen, &arr));
    TY_TRY(data_size(&arr, &nbytes));
    size_t have = len - hstart - hlen;
    TY_CHECK(have >= nbytes, TY_ERR_FORMAT,
             "npy: truncated data: the shape needs %zu bytes, the file holds %zu", nbytes, have);
    TY_CHECK(have == nbytes, TY_ERR_FORMAT,
             "npy: %zu bytes follow the data the shape describes", have - nbytes);
    const unsigned char *data = b + hstart + hlen;
    if (arr.dtype == TY_BOOL) {
        TY_TRY(check_bools(data, nbytes));
    }
    arr.data = malloc(nbytes ? nbytes : 1);
    TY_CHECK(arr.data != NULL, TY_ERR_OOM, "npy: out of memory for %zu bytes of data", nbytes);
    if (nbytes) {
        memcpy(arr.data, data, nbytes);
    }
    arr.nbytes = nbytes;
    *out = arr;
    return TY_OK;
}

static ty_status
read_whole(FILE *f, const char *path, unsigned char **buf, size_t *len)
{
    TY_CHECK(fseek(f, 0, SEEK_END) == 0, TY_ERR_IO, "npy: cannot seek in '%s'", path);
    long size = ftell(f);
    TY_CHECK(size >= 0 && fseek(f, 0, SEEK_SET) == 0, TY_ERR_IO,
             "npy: cannot read '%s' (not a regular file?)", path);
    *buf = malloc(size ? (size_t)size : 1);
    TY_CHECK(*buf != NULL, TY_ERR_OOM, "npy: out of memory reading '%s'", path);
    *len = fread(*buf, 1, (size_t)size, f);
    TY_CHECK(*len == (size_t)size && !ferror(f), TY_ERR_IO, "npy: cannot read '%s'", path);
    return TY_OK;
}

ty_status
ty_npy_read_file(const char *path, ty_npy *out)
{
    TY_CHECK(path != NULL && out != NULL, TY_ERR_INVALID_ARG, "npy: NULL argument");
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    TY_CHECK(f != NULL, TY_ERR_IO, "npy: cannot open '%s': %s", path, strerror(errno));
    unsigned char *buf = NULL;
    size_t len = 0;
    ty_status st = read_whole(f, path, &buf, &len);
    fclose(f);
    if (st == TY_OK) {
        st = ty_npy_parse(buf, len, out);
        if (st != TY_OK) {
            ty_error_prefix(path);
        }
    }
    free(buf);
    return st;
}

static const char *
descr_of(ty_dtype dt)
{
    for (int i = 0; i < NPY_NDTYPES; i++) {
        if (NPY_DTYPES[i].dtype == dt) {
            return NPY_DTYPES[i].descr;
        }
    }
    return NULL;
}

/* The header dict as NumPy writes it, padded with spaces and '\n' to a multiple of 64 bytes
 * (prefix included), into out (at least 512 bytes: 8 dims of 20 digits fit). */
static size_t
format_header(const char *descr, int ndim, const int64_t *shape, char *out, size_t cap)
{
    size_t n = (size_t)snprintf(out, cap, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                                descr);
    for (int i = 0; i < ndim; i++) {
        n += (size_t)snprintf(out + n, cap - n, "%lld%s", (long long)shape[i],
                              ndim == 1 ? "," : i + 1 < ndim ? ", " : "");
    }
    n += (size_t)snprintf(out + n, cap - n, "), }");
    while ((NPY_PREFIX_V1 + n + 1) % NPY_ALIGN != 0) {
        out[n++] = ' ';
    }
    out[n++] = '\n';
    return n;
}

ty_status
ty_npy_write_file(const char *path, ty_dtype dt, int ndim, const int64_t *shape,
                  const void *data, size_t nbytes)
{
    TY_CHECK(path != NULL && (data != NULL || nbytes == 0), TY_ERR_INVALID_ARG,
             "npy: NULL argument");
    TY_CHECK(ndim >= 0 && ndim <= TY_MAX_DIMS && (ndim == 0 || shape != NULL), TY_ERR_SHAPE,
             "npy: %d dimensions (0 to %d)", ndim, TY_MAX_DIMS);
    const char *descr = descr_of(dt);
    TY_CHECK(descr != NULL, TY_ERR_DTYPE, "npy: %s has no .npy dtype", ty_dtype_name(dt));
    ty_npy arr = {.dtype = dt, .ndim = ndim};
    for (int i = 0; i < ndim; i++) {
        TY_CHECK(shape[i] >= 0, TY_ERR_SHAPE, "npy: negative dimension %lld",
                 (long long)shape[i]);
        arr.shape[i] = shape[i];
    }
    size_t want = 0;
    TY_TRY(data_size(&arr, &want));
    TY_CHECK(want == nbytes, TY_ERR_INVALID_ARG, "npy: %zu bytes given, the shape needs %zu",
             nbytes, want);
    char header[512];
    size_t hlen = format_header(descr, ndim, shape, header, sizeof header);
    unsigned char prefix[NPY_PREFIX_V1] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    prefix[8] = (unsigned char)(hlen & 0xff);
    prefix[9] = (unsigned char)(hlen >> 8);
    FILE *f = fopen(path, "wb");
    TY_CHECK(f != NULL, TY_ERR_IO, "npy: cannot create '%s': %s", path, strerror(errno));
    int ok = fwrite(prefix, 1, sizeof prefix, f) == sizeof prefix &&
             fwrite(header, 1, hlen, f) == hlen &&
             (nbytes == 0 || fwrite(data, 1, nbytes, f) == nbytes);
    ok = (fclose(f) == 0) && ok;
    TY_CHECK(ok, TY_ERR_IO, "npy: cannot write '%s'", path);
    return TY_OK;
}

void
ty_npy_free(ty_npy *arr)
{
    if (arr != NULL) {
        free(arr->data);
        memset(arr, 0, sizeof *arr);
    }
}
