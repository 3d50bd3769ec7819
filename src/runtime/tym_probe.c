/* Which dimensions of a freshly written model may vary: the writer marks every input's
 * dimension 0 (the batch) variable, then this runs the model once at another batch size.
 * Outputs whose dimensions changed get -1 there; when the graph cannot take the new batch
 * size (a reshape to a fixed shape, say), the inputs' dimension 0 is fixed again. */
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

/* Zeros for every input, dimension 0 one larger than traced. */
static ty_status
set_probe_inputs(ty_session *s, const ty_model *m, const tym_probe *p)
{
    for (int i = 0; i < m->ninputs; i++) {
        const tym_io *in = &m->inputs[i];
        int64_t shape[TY_MAX_DIMS];
        size_t nbytes = ty_dtype_size(in->dtype);
        for (int d = 0; d < in->ndim; d++) {
            shape[d] = d == 0 ? p->batch[i] + 1 : in->shape[d];
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

static int
has_random_ops(const ty_model *m)
{
    for (int i = 0; i < m->nops; i++) {
        if (ty_op_flags(m->ops[i].op) & TY_F_RANDOM) {
            return 1;
        }
    }
    return 0;
}

static void
mark_dims(const tym_probe *p, const ty_model *m, ty_session *s, int ran)
{
    for (int i = 0; !ran && i < p->nin; i++) {
        if (p->batch[i] >= 0) {
            put_i64_at(p->file + p->in_pos[i], p->batch[i]);
        }
    }
    for (int j = 0; ran && j < p->nout; j++) {
        const ty_tensor *t = NULL;
        const tym_io *o = &m->outputs[j];
        if (ty_session_output(s, j, &t) != TY_OK || ty_tensor_ndim(t) != o->ndim) {
            continue;
        }
        for (int d = 0; d < o->ndim; d++) {
            if (ty_tensor_shape(t)[d] != o->shape[d]) {
                put_i64_at(p->file + p->out_pos[j] + 8 * (size_t)d, -1);
            }
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
    /* random ops would draw from the user's generator: their models keep dimension 0 open */
    if (any && !has_random_ops(m) && (st = ty_session_new(m, &s)) == TY_OK) {
        int ran = set_probe_inputs(s, m, p) == TY_OK && ty_session_run(s) == TY_OK;
        ty_clear_error();
        mark_dims(p, m, s, ran);
        ty_session_free(s);
        ty_tym_set_crc(p->file, p->nbytes);
    }
    ty_model_free(m);
    return st;
}
