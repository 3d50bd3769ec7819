/* classify MODEL.tym [--data DIR] [--limit N] [--batch N] [--predictions]: runs a Fashion-MNIST
 * model dumped by trace.dump on the test set with the C runtime alone (tianyuan/runtime.h, libc)
 * and prints its accuracy. Reads t10k-{images-idx3,labels-idx1}-ubyte (or .gz, via `gzip -dc`)
 * from DIR (default /usr/share/datasets/fashion-mnist) and normalizes the pixels in float32 as
 * examples/fashion_mnist/train.py does. --predictions: each image's class and logit first. */
#define _POSIX_C_SOURCE 200809L /* popen */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tianyuan/runtime.h"

#define CHECK(x) do { if ((x) != TY_OK) return fail(ty_last_error()); } while (0)
enum { PIXELS = 28 * 28 };
static int fail(const char *msg)
{
    fprintf(stderr, "classify: %s\n", msg);
    return 1;
}

/* An IDX file's uint8 data (malloc'd; NULL if absent or malformed): *n items of *item bytes. */
static unsigned char *read_idx(const char *dir, const char *name, int ndim, long *n, long *item)
{
    char path[4096], cmd[4200];
    unsigned char h[4], *data = NULL;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    int piped = !f && !strchr(dir, '\'') && snprintf(cmd, sizeof cmd, "gzip -dc '%s.gz'", path) > 0;
    if (piped) f = popen(cmd, "r"); /* NULL: fails below */
    long size = 1;
    int ok = f && fread(h, 1, 4, f) == 4 && !h[0] && !h[1] && h[2] == 0x08 && h[3] == ndim;
    for (int d = 0; ok && d < ndim; d++) { /* big-endian sizes, each below 2^24 */
        ok = fread(h, 1, 4, f) == 4 && !h[0];
        ok = ok && (size *= h[1] << 16 | h[2] << 8 | h[3]) < 1L << 31;
        *n = d ? *n : size;
    }
    *item = ok && *n ? size / *n : 0;
    if (ok && (data = malloc(size + 1)) && fread(data, 1, size + 1, f) != (size_t)size)
        free(data), data = NULL; /* truncated, or trailing bytes */
    if (f && (piped ? pclose(f) : fclose(f)) != 0)
        free(data), data = NULL; /* gzip failed */
    return data;
}

int main(int argc, char **argv)
{
    const char *model_path = NULL, *dir = "/usr/share/datasets/fashion-mnist";
    long limit = -1, batch = 256, n = 0, item = 0, nlabels = 0, one, correct = 0;
    int predictions = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--predictions")) predictions = 1;
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--limit") && i + 1 < argc) limit = atol(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) batch = atol(argv[++i]);
        else if (argv[i][0] != '-' && !model_path) model_path = argv[i];
        else batch = 0;
    }
    if (!model_path || batch <= 0 || batch > 65536)
        return fail("usage: classify MODEL.tym [--data DIR] [--limit N] [--batch N] "
                    "[--predictions]");
    unsigned char *images = read_idx(dir, "t10k-images-idx3-ubyte", 3, &n, &item);
    unsigned char *labels = read_idx(dir, "t10k-labels-idx1-ubyte", 1, &nlabels, &one);
    float *x = malloc(batch * PIXELS * sizeof *x);
    if (!images || !labels || !x || item != PIXELS || nlabels != n || !n)
        return fail("cannot read 28x28 images and their labels (t10k-*-ubyte[.gz]) in --data");
    n = limit > 0 && limit < n ? limit : n;
    ty_model *model;
    ty_session *s;
    ty_io_info in; /* the image input, whatever its name */
    CHECK(ty_model_load_file(model_path, &model));
    CHECK(ty_session_new(model, &s));
    CHECK(ty_model_input(model, 0, &in));
    const float mean = (float)(0.2860 * 255), stdev = (float)(0.3530 * 255); /* train.py's */
    for (long b0 = 0; b0 < n; b0 += batch) {
        long m = n - b0 < batch ? n - b0 : batch;
        for (long i = 0; i < m * PIXELS; i++)
            x[i] = ((float)images[b0 * PIXELS + i] - mean) / stdev;
        int64_t shape[4] = {m, 1, 28, 28};
        CHECK(ty_session_set_input(s, in.name, TY_FLOAT32, 4, shape, x, m * PIXELS * sizeof *x));
        CHECK(ty_session_run(s));
        const ty_tensor *y;
        CHECK(ty_session_output(s, 0, &y));
        const int64_t *ys = ty_tensor_shape(y), k = ty_tensor_ndim(y) == 2 ? ys[1] : 0;
        if (ty_tensor_dtype(y) != TY_FLOAT32 || !k || ys[0] != m || !ty_tensor_is_contiguous(y))
            return fail("the model's output 0 is not float32 logits of shape (batch, classes)");
        const float *logits = ty_tensor_data(y);
        for (long i = 0; i < m; i++) {
            int64_t best = 0; /* the first maximum, as F.argmax */
            for (int64_t c = 1; c < k; c++)
                best = logits[i * k + c] > logits[i * k + best] ? c : best;
            correct += best == labels[b0 + i];
            if (predictions) printf("%d %a\n", (int)best, logits[i * k + best]);
        }
    }
    printf("classify: %ld images, %ld correct, accuracy %.4f\n", n, correct, (double)correct / n);
    free(x), free(images), free(labels);
    ty_session_free(s);
    ty_model_free(model);
    return 0;
}
