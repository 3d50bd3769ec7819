/* Expands params.def into field tables and ops.def into the registry. */
#include <stddef.h>
#include <string.h>

#include "ops/op.h"

/* ---- params descriptors: a function per struct, so offsetof sees a local typedef ---- */
#define TY_FI64(f, d) {#f, TY_FK_I64, offsetof(PS, f), (double)(d)},
#define TY_FF64(f, d) {#f, TY_FK_F64, offsetof(PS, f), (double)(d)},
#define TY_FLIST(f) {#f, TY_FK_LIST, offsetof(PS, f), 0.0},
#define TY_PARAMS(name, fields)                                                                    \
    static ty_p_##name defaults_##name;                                                            \
    static const ty_field_desc *fields_of_##name(int *n)                                           \
    {                                                                                              \
        typedef ty_p_##name PS __attribute__((unused));                                            \
        static const ty_field_desc f[] = {fields{NULL, TY_FK_I64, 0, 0.0}};                        \
        *n = (int)(sizeof f / sizeof f[0]) - 1;                                                    \
        return f;                                                                                  \
    }
#include "tianyuan/params.def"
#undef TY_PARAMS
#undef TY_FI64
#undef TY_FF64
#undef TY_FLIST

enum {
#define TY_PARAMS(name, fields) PARAMS_##name,
#include "tianyuan/params.def"
#undef TY_PARAMS
    PARAMS_COUNT
};

static ty_params_desc params_descs[PARAMS_COUNT];

static void
fill_defaults(ty_params_desc *d, void *dst)
{
    memset(dst, 0, d->size);
    for (int i = 0; i < d->nfields; i++) {
        char *p = (char *)dst + d->fields[i].offset;
        if (d->fields[i].kind == TY_FK_I64) {
            *(int64_t *)p = (int64_t)d->fields[i].def;
        } else if (d->fields[i].kind == TY_FK_F64) {
            *(double *)p = d->fields[i].def;
        }
    }
}

__attribute__((constructor)) static void
init_params_descs(void)
{
#define TY_PARAMS(pname, flds)                                                                     \
    {                                                                                              \
        ty_params_desc *d = &params_descs[PARAMS_##pname];                                         \
        d->name = #pname;                                                                          \
        d->size = sizeof(ty_p_##pname);                                                            \
        d->fields = fields_of_##pname(&d->nfields);                                                \
        d->defaults = &defaults_##pname;                                                           \
        fill_defaults(d, &defaults_##pname);                                                       \
    }
#include "tianyuan/params.def"
#undef TY_PARAMS
}

/* ---- the registry ---- */
const ty_op_def ty_op_defs[TY_OP_COUNT] = {
#define TY_OP(ENUM, opname, fam, ni, no, pname, fl, inf, fwd, gr)                                  \
    [TY_OP_##ENUM] = {.name = #opname,                                                             \
                      .family = #fam,                                                              \
                      .nin = ni,                                                                   \
                      .nout = no,                                                                  \
                      .flags = fl,                                                                 \
                      .params = &params_descs[PARAMS_##pname],                                     \
                      .infer = inf,                                                                \
                      .forward = fwd,                                                              \
                      .grad = gr},
#include "tianyuan/ops.def"
#undef TY_OP
};

static const ty_forward_fn cpu_forward[TY_OP_COUNT] = {
#define TY_OP(ENUM, opname, fam, ni, no, pname, fl, inf, fwd, gr) [TY_OP_##ENUM] = fwd,
#include "tianyuan/ops.def"
#undef TY_OP
};

ty_forward_fn
ty_op_forward(ty_device_type dev, ty_op op)
{
    if ((unsigned)op >= TY_OP_COUNT) {
        return NULL;
    }
    switch (dev) {
    case TY_DEVICE_CPU: return cpu_forward[op];
    default: return NULL; /* CUDA's column comes with its backend; NULL has no kernels */
    }
}

const char *
ty_op_name(ty_op op)
{
    return (unsigned)op < TY_OP_COUNT ? ty_op_defs[op].name : "invalid_op";
}

ty_status
ty_op_from_name(const char *name, ty_op *out)
{
    for (int i = 0; name && i < TY_OP_COUNT; i++) {
        if (strcmp(ty_op_defs[i].name, name) == 0) {
            *out = (ty_op)i;
            return TY_OK;
        }
    }
    return ty_set_error(TY_ERR_UNSUPPORTED, "unknown op '%s'", name ? name : "(null)");
}

int
ty_op_nin(ty_op op)
{
    return (unsigned)op < TY_OP_COUNT ? ty_op_defs[op].nin : 0;
}

int
ty_op_nout(ty_op op)
{
    return (unsigned)op < TY_OP_COUNT ? ty_op_defs[op].nout : 0;
}

uint32_t
ty_op_flags(ty_op op)
{
    return (unsigned)op < TY_OP_COUNT ? ty_op_defs[op].flags : 0;
}

const ty_params_desc *
ty_op_params(ty_op op)
{
    return (unsigned)op < TY_OP_COUNT ? ty_op_defs[op].params : NULL;
}

ty_status
ty_no_grad(const ty_call *c, ty_tensor *const *out, ty_tensor *const *gout, ty_tensor **gin)
{
    (void)out;
    (void)gout;
    (void)gin;
    return ty_set_error(TY_ERR_UNSUPPORTED, "%s is not differentiable", ty_op_name(c->op));
}
