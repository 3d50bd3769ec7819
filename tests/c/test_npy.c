/* The strict .npy reader/writer of tianyuan-run (src/runtime/npy.c): files NumPy writes parse,
 * what we write reads back, and every malformed header is a TY_ERR_FORMAT naming the problem. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "runtime/npy.h"
#include "tianyuan/tianyuan.h"

/* A file image: magic, version major.0, the header's length, header text, then data bytes. */
static size_t
npy_image(unsigned char *out, int major, const char *header, const void *data, size_t nbytes)
{
    size_t hlen = strlen(header), pre = major == 1 ? 10 : 12;
    memcpy(out, "\x93NUMPY", 6);
    out[6] = (unsigned char)major;
    out[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) {
        out[8 + i] = (unsigned char)(hlen >> (8 * i));
    }
    memcpy(out + pre, header, hlen);
    memcpy(out + pre + hlen, data, nbytes);
    return pre + hlen + nbytes;
}

TEST(npy_parses_every_header_version_and_dtype)
{
    static const struct {
        const char *descr;
        ty_dtype dt;
    } rows[] = {{"<f4", TY_FLOAT32}, {"<f8", TY_FLOAT64}, {"<f2", TY_FLOAT16},
                {"|i1", TY_INT8},    {"|u1", TY_UINT8},   {"<i2", TY_INT16},
                {"<i4", TY_INT32},   {"<i8", TY_INT64},   {"|b1", TY_BOOL}};
    unsigned char data[48], img[256];
    for (int i = 0; i < 48; i++) {
        data[i] = (unsigned char)(i % 2); /* valid bools too */
    }
    for (int major = 1; major <= 3; major++) {
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            char header[128];
            snprintf(header, sizeof header,
                     "{'descr': '%s', 'fortran_order': False, 'shape': (2, 3), }    \n",
                     rows[r].descr);
            size_t n = ty_dtype_size(rows[r].dt) * 6;
            size_t len = npy_image(img, major, header, data, n);
            ty_npy arr;
            CHECK_OK(ty_npy_parse(img, len, &arr));
            CHECK(arr.dtype == rows[r].dt && arr.ndim == 2);
            CHECK(arr.shape[0] == 2 && arr.shape[1] == 3 && arr.nbytes == n);
            CHECK(memcmp(arr.data, data, n) == 0);
            ty_npy_free(&arr);
        }
    }
}

TEST(npy_shapes_scalar_empty_and_key_order)
{
    float v = 2.5f;
    unsigned char img[256];
    ty_npy arr;
    size_t len = npy_image(img, 1, "{'shape': (), 'fortran_order': False, 'descr': '<f4'}\n",
                           &v, 4);
    CHECK_OK(ty_npy_parse(img, len, &arr));
    CHECK(arr.ndim == 0 && arr.nbytes == 4 && *(float *)arr.data == 2.5f);
    ty_npy_free(&arr);
    len = npy_image(img, 1, "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (0, 5)}",
                    "", 0);
    CHECK_OK(ty_npy_parse(img, len, &arr));
    CHECK(arr.ndim == 2 && arr.shape[0] == 0 && arr.shape[1] == 5 && arr.nbytes == 0);
    ty_npy_free(&arr);
}

/* Each malformed file fails with TY_ERR_FORMAT and a message holding `words`. */
static int
fails_with(const char *header, size_t nbytes, int major, const char *words)
{
    static unsigned char img[1024], data[256];
    size_t len = npy_image(img, major, header, data, nbytes);
    ty_npy arr;
    ty_status st = ty_npy_parse(img, len, &arr);
    int ok = st == TY_ERR_FORMAT && strstr(ty_last_error(), words) != NULL && arr.data == NULL;
    if (!ok) {
        fprintf(stderr, "  header %s: status %d, message '%s'\n", header, st, ty_last_error());
    }
    return ok;
}

TEST(npy_refuses_hostile_headers)
{
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8, 1,
                     "fortran_order True"));
    CHECK(fails_with("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, 1,
                     "big-endian"));
    CHECK(fails_with("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, 1,
                     "not supported"));
    CHECK(fails_with("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, 1,
                     "not a quoted string"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, "
                     "4611686018427387904), }",
                     0, 1, "overflows"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                     0, 1, "too large"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 0, 1,
                     "non-negative"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 4,
                     1, "more than 8"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 8, 1,
                     "one-element tuple"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }", 8, 1,
                     "truncated"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 8, 1,
                     "follow the data"));
    CHECK(fails_with("{'descr': '<f4', 'descr': '<f4', 'shape': (1,), }", 4, 1, "repeats"));
    CHECK(fails_with("{'descr': '<f4', 'shape': (1,), }", 4, 1, "lacks 'fortran_order'"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4, 1,
                     "unknown key"));
    CHECK(fails_with("{'descr': '<f4' 'fortran_order': False, 'shape': (1,)}", 4, 1,
                     "malformed"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} x", 4, 1,
                     "text after"));
    CHECK(fails_with("{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", 4, 1,
                     "not supported"));
    CHECK(fails_with("{'descr': '|b1', 'fortran_order': False, 'shape': (1,), }", 0, 1,
                     "truncated"));
    CHECK(fails_with("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4, 4,
                     "version 4.0"));
}

TEST(npy_refuses_bad_prefixes_and_bool_bytes)
{
    unsigned char img[128];
    ty_npy arr;
    CHECK(ty_npy_parse("\x93NUMPY\x01", 7, &arr) == TY_ERR_FORMAT);
    CHECK(ty_npy_parse("PK\x03\x04xxxxxxxxxx", 14, &arr) == TY_ERR_FORMAT);
    size_t len = npy_image(img, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': ()}", "",
                           0);
    img[8] = 0xff, img[9] = 0xff, img[10] = 0xff, img[11] = 0x7f; /* header past the end */
    CHECK(ty_npy_parse(img, len, &arr) == TY_ERR_FORMAT && strstr(ty_last_error(), "past"));
    len = npy_image(img, 1, "{'descr': '|b1', 'fortran_order': False, 'shape': (2,)}", "\x01\x02",
                    2);
    CHECK(ty_npy_parse(img, len, &arr) == TY_ERR_FORMAT && strstr(ty_last_error(), "bool"));
}

TEST(npy_write_then_read_round_trips)
{
    char path[] = "/tmp/ty_test_npy_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    int64_t shape[3] = {2, 1, 3};
    int32_t v[6] = {-3, 0, 7, 2147483647, -2147483647 - 1, 42};
    ty_npy arr;
    CHECK(ty_npy_write_file(path, TY_INT32, 3, shape, v, sizeof v) == TY_OK);
    CHECK(ty_npy_read_file(path, &arr) == TY_OK);
    CHECK(arr.dtype == TY_INT32 && arr.ndim == 3 && arr.shape[2] == 3);
    CHECK(arr.nbytes == sizeof v && memcmp(arr.data, v, sizeof v) == 0);
    ty_npy_free(&arr);
    CHECK(ty_npy_write_file(path, TY_BFLOAT16, 3, shape, v, 12) == TY_ERR_DTYPE);
    CHECK(ty_npy_write_file(path, TY_INT32, 3, shape, v, 8) == TY_ERR_INVALID_ARG);
    unlink(path);
    CHECK(ty_npy_read_file(path, &arr) == TY_ERR_IO && strstr(ty_last_error(), path));
}

/* Every truncation and every single-byte change of a valid file parses or is a format error
 * (under ASan: never reads out of bounds). */
TEST(npy_survives_every_truncation_and_byte_change)
{
    static const unsigned char values[] = {0x00, 0x01, 0x7f, 0xff, '(', ')', ',', '\'', '9'};
    unsigned char img[256], data[24] = {0};
    size_t len = npy_image(img, 2, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n",
                           data, sizeof data);
    ty_npy arr;
    for (size_t n = 0; n < len; n++) {
        CHECK(ty_npy_parse(img, n, &arr) == TY_ERR_FORMAT);
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char keep = img[i];
        for (size_t v = 0; v < sizeof values; v++) {
            img[i] = values[v];
            ty_status st = ty_npy_parse(img, len, &arr);
            CHECK(st == TY_OK || st == TY_ERR_FORMAT);
            CHECK(st != TY_OK || arr.nbytes == ty_dtype_size(arr.dtype) * 6);
            ty_npy_free(&arr);
        }
        img[i] = keep;
    }
}
