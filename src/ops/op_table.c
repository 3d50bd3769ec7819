/* Expands params.def into field tables and ops.def into the registry. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ops/op.h"

/* ---- params descriptors: a function per struct, so offsetof sees a local typedef ---- */
/* the range arguments are shorthands (TY_NONNEG...): one more expansion splits them */
#define FI64_(f, d, lo, hi, st) {#f, TY_FK_I64, offsetof(PS, f), (double)(d), lo, hi, 0.0, 0.0, st},
#define FF64_(f, d, lo, hi, st) {#f, TY_FK_F64, offsetof(PS, f), (double)(d), 0, 0, lo, hi, st},
#define FLIST_(f, lo, hi, st) {#f, TY_FK_LIST, offsetof(PS, f), 0.0, lo, hi, 0.0, 0.0, st},
#define TY_FI64(f, d, ...) FI64_(f, d, __VA_ARGS__)
#define TY_FF64(f, d, ...) FF64_(f, d, __VA_ARGS__)
#define TY_FLIST(f, ...) FLIST_(f, __VA_ARGS__)
#define TY_PARAMS(name, fields)                                                                    \
    static ty_p_##name defaults_##name;                                                            \
    static const ty_field_desc *fields_of_##name(int *n)                                           \
    {                                                                                              \
        typedef ty_p_##name PS __attribute__((unused));                                            \
        static const ty_field_desc f[] = {fields{NULL, TY_FK_I64, 0, 0.0, 0, 0, 0.0, 0.0, 0}};                        \
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

/* ---- params validation: every field against its params.def range ---- */
static ty_status
check_int(const ty_field_desc *f, int64_t v, const char *what)
{
    if (v >= f->ilo && v <= f->ihi) {
        return TY_OK;
    }
    ty_status st = (ty_status)f->range_status;
    long long x = v, lo = f->ilo, hi = f->ihi;
    if (st == TY_ERR_INDEX) {
        return ty_set_error(st, "axis %lld is out of range [%lld, %lld] (param '%s')", x, lo, hi,
                            f->name);
    }
    if (st == TY_ERR_DTYPE) {
        return ty_set_error(st, "invalid dtype code %lld (param '%s')", x, f->name);
    }
    if (st == TY_ERR_SHAPE) {
        return ty_set_error(st, "negative dimension %lld in param '%s'%s", x, f->name, what);
    }
    if (f->ihi == INT64_MAX) {
        return ty_set_error(st, "param '%s'%s must be >= %lld, got %lld", f->name, what, lo, x);
    }
    return ty_set_error(st, "param '%s'%s must be in [%lld, %lld], got %lld", f->name, what, lo,
                        hi, x);
}

static ty_status
check_list(const ty_field_desc *f, const ty_i64list *l)
{
    TY_CHECK(l->n >= 0 && l->n <= TY_LIST_MAX, TY_ERR_INVALID_ARG,
             "param '%s' has %d entries, must have 0 to %d", f->name, (int)l->n, TY_LIST_MAX);
    for (int i = 0; i < l->n; i++) {
        if (l->v[i] < f->ilo || l->v[i] > f->ihi) {
            char buf[TY_SHAPE_BUF], what[TY_SHAPE_BUF + 8];
            snprintf(what, sizeof what, " %s", ty_shape_str(l->n, l->v, buf, sizeof buf));
            return check_int(f, l->v[i], what);
        }
    }
    return TY_OK;
}

static ty_status
check_float(const ty_field_desc *f, double v)
{
    int unbounded = isinf(f->flo) && f->flo < 0 && isinf(f->fhi) && f->fhi > 0;
    TY_CHECK(!isnan(v) || unbounded, TY_ERR_INVALID_ARG, "param '%s' is NaN", f->name);
    TY_CHECK(isnan(v) || (v >= f->flo && v <= f->fhi), (ty_status)f->range_status,
             "param '%s' is %g, must be in [%g, %g]", f->name, v, f->flo, f->fhi);
    return TY_OK;
}

ty_status
ty_params_check(const ty_params_desc *d, const void *params)
{
    const char *base = params;
    for (int i = 0; i < d->nfields; i++) {
        const ty_field_desc *f = &d->fields[i];
        const void *p = base + f->offset;
        switch (f->kind) {
        case TY_FK_I64: TY_TRY(check_int(f, *(const int64_t *)p, "")); break;
        case TY_FK_F64: TY_TRY(check_float(f, *(const double *)p)); break;
        case TY_FK_LIST: TY_TRY(check_list(f, (const ty_i64list *)p)); break;
        }
    }
    return TY_OK;
}
