#include <math.h>
#include <string.h>

#include "base/base.h"

static const struct {
    const char *name;
    size_t size;
    int is_float;
    int rank; /* promotion rank within its kind */
} dtype_info[TY_DTYPE_COUNT] = {
    [TY_FLOAT32] = {"float32", 4, 1, 3},  [TY_FLOAT64] = {"float64", 8, 1, 4},
    [TY_FLOAT16] = {"float16", 2, 1, 1},  [TY_BFLOAT16] = {"bfloat16", 2, 1, 2},
    [TY_INT8] = {"int8", 1, 0, 1},        [TY_UINT8] = {"uint8", 1, 0, 1},
    [TY_INT16] = {"int16", 2, 0, 2},      [TY_INT32] = {"int32", 4, 0, 3},
    [TY_INT64] = {"int64", 8, 0, 4},      [TY_BOOL] = {"bool", 1, 0, 0},
};

static int
valid(ty_dtype dt)
{
    return (unsigned)dt < TY_DTYPE_COUNT;
}

const char *
ty_dtype_name(ty_dtype dt)
{
    return valid(dt) ? dtype_info[dt].name : "invalid";
}

size_t
ty_dtype_size(ty_dtype dt)
{
    return valid(dt) ? dtype_info[dt].size : 0;
}

int
ty_dtype_is_float(ty_dtype dt)
{
    return valid(dt) && dtype_info[dt].is_float;
}

ty_status
ty_dtype_from_name(const char *name, ty_dtype *out)
{
    for (int i = 0; i < TY_DTYPE_COUNT; i++) {
        if (name && strcmp(name, dtype_info[i].name) == 0) {
            *out = (ty_dtype)i;
            return TY_OK;
        }
    }
    return ty_set_error(TY_ERR_DTYPE, "unknown dtype '%s'", name ? name : "(null)");
}

static ty_dtype
int_of_rank(int rank)
{
    static const ty_dtype by_rank[] = {TY_BOOL, TY_INT8, TY_INT16, TY_INT32, TY_INT64};
    return by_rank[rank > 4 ? 4 : rank];
}

/* numpy-style promotion between two tensor dtypes (Python scalars are weak: see Python side). */
ty_dtype
ty_promote(ty_dtype a, ty_dtype b)
{
    if (a == b) {
        return a;
    }
    if (a == TY_BOOL) {
        return b;
    }
    if (b == TY_BOOL) {
        return a;
    }
    int fa = dtype_info[a].is_float, fb = dtype_info[b].is_float;
    if (fa && fb) {
        if ((a == TY_FLOAT16 && b == TY_BFLOAT16) || (a == TY_BFLOAT16 && b == TY_FLOAT16)) {
            return TY_FLOAT32;
        }
        return dtype_info[a].rank > dtype_info[b].rank ? a : b;
    }
    if (fa || fb) {
        return fa ? a : b;
    }
    if (a == TY_UINT8 || b == TY_UINT8) {
        ty_dtype other = a == TY_UINT8 ? b : a;
        int r = dtype_info[other].rank;
        return int_of_rank(r < 2 ? 2 : r); /* uint8 fits only in int16 and wider */
    }
    return dtype_info[a].rank > dtype_info[b].rank ? a : b;
}

float
ty_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            exp = 127 - 15 + 1;
            while (!(mant & 0x400)) {
                mant <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t
ty_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) { /* inf or nan */
        return (uint16_t)(sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0));
    }
    if (absx >= 0x477ff000u) { /* rounds to >= 65520: overflow */
        return (uint16_t)(sign | 0x7c00);
    }
    if (absx < 0x38800000u) { /* subnormal or zero in half */
        float a;
        memcpy(&a, &absx, 4);
        uint32_t m = (uint32_t)lrintf(a * 16777216.0f); /* a / 2^-24, round-to-even */
        return (uint16_t)(sign | m);
    }
    uint32_t mant = absx & 0x7fffff, e = (absx >> 23) - 127 + 15;
    uint32_t h = (e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) {
        h++;
    }
    return (uint16_t)(sign | h);
}

float
ty_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t
ty_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        return (uint16_t)((x >> 16) | 0x40);
    }
    x += 0x7fff + ((x >> 16) & 1); /* round to nearest even */
    return (uint16_t)(x >> 16);
}

double
ty_load_f64(const void *p, ty_dtype dt)
{
    switch (dt) {
    case TY_FLOAT32: return *(const float *)p;
    case TY_FLOAT64: return *(const double *)p;
    case TY_FLOAT16: return ty_f16_to_f32(*(const uint16_t *)p);
    case TY_BFLOAT16: return ty_bf16_to_f32(*(const uint16_t *)p);
    case TY_INT8: return *(const int8_t *)p;
    case TY_UINT8: return *(const uint8_t *)p;
    case TY_INT16: return *(const int16_t *)p;
    case TY_INT32: return *(const int32_t *)p;
    case TY_INT64: return (double)*(const int64_t *)p;
    case TY_BOOL: return *(const uint8_t *)p != 0;
    case TY_DTYPE_COUNT: break;
    }
    return 0.0;
}

/* Float-to-int conversion saturates and maps NaN to 0: C leaves it undefined. */
static int64_t
sat_i64(double v, double lo, double hi)
{
    if (!(v == v)) {
        return 0;
    }
    if (v <= lo) {
        return (int64_t)lo;
    }
    if (v >= hi) {
        return (int64_t)hi;
    }
    return (int64_t)v;
}

void
ty_store_f64(void *p, ty_dtype dt, double v)
{
    switch (dt) {
    case TY_FLOAT32: *(float *)p = (float)v; break;
    case TY_FLOAT64: *(double *)p = v; break;
    case TY_FLOAT16: *(uint16_t *)p = ty_f32_to_f16((float)v); break;
    case TY_BFLOAT16: *(uint16_t *)p = ty_f32_to_bf16((float)v); break;
    case TY_INT8: *(int8_t *)p = (int8_t)sat_i64(v, -128, 127); break;
    case TY_UINT8: *(uint8_t *)p = (uint8_t)sat_i64(v, 0, 255); break;
    case TY_INT16: *(int16_t *)p = (int16_t)sat_i64(v, -32768, 32767); break;
    case TY_INT32: *(int32_t *)p = (int32_t)sat_i64(v, -2147483648.0, 2147483647.0); break;
    case TY_INT64:
        *(int64_t *)p = sat_i64(v, -9223372036854775808.0, 9223372036854774784.0);
        break;
    case TY_BOOL: *(uint8_t *)p = v != 0; break;
    case TY_DTYPE_COUNT: break;
    }
}
