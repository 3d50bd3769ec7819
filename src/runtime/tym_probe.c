/* The check after the batch analysis (tym_batch.c): a model whose batch dimensions are marked
 * variable runs once at another batch size; when it cannot (a weight sized like the batch,
 * say), the dimensions are fixed again. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/tym.h"

static void
put_i64_at(unsigned char *at, int64_t v)
{
    for (int i = 0; i < 8; i++) {
        at[i] = (unsigned char)((uint64_t)v >> (8 * i));
    }
}

void
ty_tym_set_crc(unsigned char *file, size_t n)
{
    uint32_t crc = ty_tym_crc32(0, file + 16, n - 16);
    for (int i = 0; i < 4; i++) {
        file[12 + i] = (unsigned char)(crc >> (8 * i));
    }
}

/* Zeros for every input, dimension 0 one larger where it varies. */
static ty_status
set_probe_inputs(ty_session *s, const ty_model *m, const tym_probe *p)
{
    for (int i = 0; i < m->ninputs; i++) {
        const tym_io *in = &m->inputs[i];
        int64_t shape[TY_MAX_DIMS];
        size_t nbytes = ty_dtype_size(in->dtype);
        for (int d = 0; d < in->ndim; d++) {
            shape[d] = in->shape[d] < 0 ? p->batch[i] + 1 : in->shape[d];
            TY_CHECK(!__builtin_mul_overflow(nbytes, (size_t)shape[d], &nbytes), TY_ERR_OOM,
                     "trace.dump: input %d is too large", i);
        }
        void *zeros = calloc(nbytes ? nbytes : 1, 1);
        TY_CHECK(zeros, TY_ERR_OOM, "trace.dump: out of memory");
        ty_status st = ty_session_set_input(s, in->name, in->dtype, in->ndim, shape, zeros,
                                            nbytes);
        free(zeros);
        TY_TRY(st);
    }
    return TY_OK;
}

static void
fix_dims(const tym_probe *p)
{
    for (int i = 0; i < p->nin; i++) {
        if (p->batch[i] >= 0) {
            put_i64_at(p->file + p->in_pos[i], p->batch[i]);
        }
    }
    for (int j = 0; j < p->nout; j++) {
        if (p->out_dim[j] >= 0) {
            put_i64_at(p->file + p->out_pos[j], p->out_dim[j]);
        }
    }
}

ty_status
ty_tym_probe_batch(const tym_probe *p)
{
    int any = 0;
    for (int i = 0; i < p->nin; i++) {
        any |= p->batch[i] >= 0;
    }
    ty_model *m = NULL;
    ty_session *s = NULL;
    ty_status st = ty_model_load_buffer(p->file, p->nbytes, 0, &m);
    if (st != TY_OK) {
        char why[512];
        snprintf(why, sizeof why, "%s", ty_last_error());
        return ty_set_error(TY_ERR_INTERNAL, "trace.dump: the written model does not load: %s",
                            why);
    }
    if (any && (st = ty_session_new(m, &s)) == TY_OK) {
        int ran = set_probe_inputs(s, m, p) == TY_OK && ty_session_run(s) == TY_OK;
        ty_clear_error();
        if (!ran) {
            fix_dims(p);
            ty_tym_set_crc(p->file, p->nbytes);
        }
        ty_session_free(s);
    }
    ty_model_free(m);
    return st;
}
