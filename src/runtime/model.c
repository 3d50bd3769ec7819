/* Loading and freeing models (a file, read into huge pages or mapped, or a buffer), and what a
 * model tells about itself. The bytes live in a refcounted region: the model and every weight
 * storage hold it, so a weight viewed by a returned tensor outlives the model safely. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/tym.h"

/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32), eight bytes per step ("slicing by 8"):
 * loading checks every byte of the file, so this is most of a large model's load time. */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void
crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) {
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++) {
        for (int i = 0; i < 256; i++) {
            uint32_t c = crc_table[t - 1][i];
            crc_table[t][i] = crc_table[0][c & 0xFF] ^ (c >> 8);
        }
    }
}

uint32_t
ty_tym_crc32(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const unsigned char *p = data;
    crc = ~crc;
    for (; n >= 8; n -= 8, p += 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
              crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^
              crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
    }
    for (; n > 0; n--, p++) {
        crc = crc_table[0][(crc ^ *p) & 0xFF] ^ (crc >> 8);
    }
    return ~crc;
}

int
ty_tym_field_is_dtype(const ty_field_desc *f)
{
    return f->kind == TY_FK_I64 && f->range_status == TY_ERR_DTYPE;
}

void
ty_tym_region_unref(tym_region *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1) {
        return;
    }
    if (r->kind == 2) {
        munmap(r->base, r->size);
    } else if (r->kind == 1) {
        free(r->base);
    }
    free(r);
}

static void
free_io(tym_io *io, int n)
{
    for (int i = 0; io && i < n; i++) {
        free(io[i].name);
    }
    free(io);
}

void
ty_model_unref(ty_model *m)
{
    if (!m || atomic_fetch_sub(&m->refs, 1) != 1) {
        return;
    }
    for (int i = 0; m->weights && i < m->nweights; i++) {
        ty_tensor_release(m->weights[i]);
    }
    for (int i = 0; m->weight_names && i < m->nweights; i++) {
        free(m->weight_names[i]);
    }
    free(m->weight_names);
    for (int i = 0; m->ops && i < m->nops; i++) {
        free(m->ops[i].name);
        free(m->ops[i].params);
        free(m->ops[i].in);
    }
    free_io(m->inputs, m->ninputs);
    free_io(m->outputs, m->noutputs);
    free(m->weights);
    free(m->ops);
    free(m->last_use);
    free(m->metadata);
    ty_tym_region_unref(m->region);
    free(m);
}

void
ty_model_free(ty_model *model)
{
    ty_model_unref(model);
}

static ty_status
new_region(void *base, size_t size, int kind, tym_region **out)
{
    tym_region *r = calloc(1, sizeof *r);
    TY_CHECK(r, TY_ERR_OOM, "model: out of memory");
    atomic_init(&r->refs, 1);
    r->base = base;
    r->size = size;
    r->kind = kind;
    *out = r;
    return TY_OK;
}

ty_status
ty_model_load_buffer(const void *data, size_t nbytes, int borrow, ty_model **out)
{
    TY_CHECK(out && (data || nbytes == 0), TY_ERR_INVALID_ARG, "model: NULL argument");
    tym_region *r = NULL;
    /* weights are used in place: a borrowed buffer must keep them 64-byte aligned */
    if (borrow && (uintptr_t)data % TYM_ALIGN == 0) {
        TY_TRY(new_region((void *)data, nbytes, 0, &r));
    } else {
        void *copy = aligned_alloc(TYM_ALIGN, (nbytes + TYM_ALIGN - 1) / TYM_ALIGN * TYM_ALIGN
                                                  + TYM_ALIGN);
        TY_CHECK(copy, TY_ERR_OOM, "model: out of memory copying a %zu-byte model", nbytes);
        if (nbytes) {
            memcpy(copy, data, nbytes);
        }
        ty_status st = new_region(copy, nbytes, 1, &r);
        if (st != TY_OK) {
            free(copy);
            return st;
        }
    }
    return ty_tym_parse(r, out);
}

/* A file of HUGE_COPY_MIN bytes or more is read into memory that asks for transparent huge
 * pages instead of being mapped: a network's weights come cold from memory on every
 * inference, and on a virtual machine each 4 KiB page's TLB miss walks two page tables.
 * ResNet-50 at batch 1, one thread, 6 alternating pairs: 1.067x (1.04-1.16) per run; its
 * load takes about 27 ms longer (98-119 ms against 72-80). NULL (then the file is mapped)
 * when the memory or the read fails. */
enum { HUGE_COPY_MIN = 2 << 20 };

static void *
huge_copy(int fd, size_t size)
{
    size_t whole = (size + HUGE_COPY_MIN - 1) / HUGE_COPY_MIN * HUGE_COPY_MIN;
    char *p = aligned_alloc(HUGE_COPY_MIN, whole);
    if (!p) {
        return NULL;
    }
#ifdef MADV_HUGEPAGE
    (void)madvise(p, whole, MADV_HUGEPAGE);
#endif
    for (size_t done = 0; done < size;) {
        ssize_t n = pread(fd, p + done, size - done, (off_t)done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            free(p);
            return NULL;
        }
        done += (size_t)n;
    }
    return p;
}

ty_status
ty_model_load_file(const char *path, ty_model **out)
{
    TY_CHECK(path && out, TY_ERR_INVALID_ARG, "model: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    TY_CHECK(fd >= 0, TY_ERR_IO, "model: cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ty_set_error(TY_ERR_IO, "model: '%s' is not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    if (size < TYM_HEADER) {
        close(fd);
        return ty_set_error(TY_ERR_FORMAT, "model: '%s' has %zu bytes, fewer than the %d-byte "
                                           "header", path, size, TYM_HEADER);
    }
    void *huge = NULL;
    if (size >= HUGE_COPY_MIN && (huge = huge_copy(fd, size)) != NULL) {
        close(fd);
        tym_region *hr = NULL;
        ty_status hs = new_region(huge, size, 1, &hr);
        if (hs != TY_OK) {
            free(huge);
            return hs;
        }
        return ty_tym_parse(hr, out);
    }
    void *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    TY_CHECK(base != MAP_FAILED, TY_ERR_IO, "model: cannot map '%s': %s", path, strerror(err));
    tym_region *r = NULL;
    ty_status st = new_region(base, size, 2, &r);
    if (st != TY_OK) {
        munmap(base, size);
        return st;
    }
    return ty_tym_parse(r, out);
}

int
ty_model_num_inputs(const ty_model *model)
{
    return model ? model->ninputs : 0;
}

int
ty_model_num_outputs(const ty_model *model)
{
    return model ? model->noutputs : 0;
}

static ty_status
io_info(const tym_io *io, int n, int i, const char *what, ty_io_info *out)
{
    TY_CHECK(out, TY_ERR_INVALID_ARG, "model: NULL argument");
    TY_CHECK(i >= 0 && i < n, TY_ERR_INDEX, "model: %s %d does not exist (the model has %d)",
             what, i, n);
    out->name = io[i].name;
    out->dtype = io[i].dtype;
    out->ndim = io[i].ndim;
    out->shape = io[i].shape;
    return TY_OK;
}

ty_status
ty_model_input(const ty_model *model, int i, ty_io_info *out)
{
    TY_CHECK(model, TY_ERR_INVALID_ARG, "model: NULL model");
    return io_info(model->inputs, model->ninputs, i, "input", out);
}

ty_status
ty_model_output(const ty_model *model, int i, ty_io_info *out)
{
    TY_CHECK(model, TY_ERR_INVALID_ARG, "model: NULL model");
    return io_info(model->outputs, model->noutputs, i, "output", out);
}

int
ty_model_num_ops(const ty_model *model)
{
    return model ? model->nops : 0;
}

int64_t
ty_model_weight_bytes(const ty_model *model)
{
    return model ? model->weight_bytes : 0;
}

const char *
ty_model_op_type(const ty_model *model, int i)
{
    return model && i >= 0 && i < model->nops ? ty_op_name(model->ops[i].op) : NULL;
}

int
ty_model_num_weights(const ty_model *model)
{
    return model ? model->nweights : 0;
}

ty_status
ty_model_weight(const ty_model *model, int i, ty_io_info *out)
{
    TY_CHECK(model && out, TY_ERR_INVALID_ARG, "model: NULL argument");
    TY_CHECK(i >= 0 && i < model->nweights, TY_ERR_INDEX,
             "model: weight %d does not exist (the model has %d)", i, model->nweights);
    const ty_tensor *w = model->weights[i];
    out->name = model->weight_names[i];
    out->dtype = ty_tensor_dtype(w);
    out->ndim = ty_tensor_ndim(w);
    out->shape = ty_tensor_shape(w);
    return TY_OK;
}

const char *
ty_model_op_name(const ty_model *model, int i)
{
    return model && i >= 0 && i < model->nops ? model->ops[i].name : NULL;
}

const char *
ty_model_metadata(const ty_model *model)
{
    return model && model->metadata ? model->metadata : "";
}
