/* The global generator: counter-based, so an op that draws n numbers reserves a counter range
 * and its values depend only on (seed, position in the stream), whichever thread computes
 * them. A replayed graph reserves the same ranges as eager execution, giving the same bits. */
#include <pthread.h>

#include "core/core.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_key = 0x5eed5eed12345678ull;
static uint64_t g_counter;

static uint64_t
mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void
ty_random_seed(uint64_t seed)
{
    pthread_mutex_lock(&mu);
    g_key = mix64(seed + 0x9e3779b97f4a7c15ull);
    g_counter = 0;
    pthread_mutex_unlock(&mu);
}

void
ty_random_reserve(uint64_t n, uint64_t *key, uint64_t *counter)
{
    pthread_mutex_lock(&mu);
    *key = g_key;
    *counter = g_counter;
    g_counter += n;
    pthread_mutex_unlock(&mu);
}

uint64_t
ty_random_bits(uint64_t key, uint64_t counter)
{
    /* two rounds of a strong 64-bit mixer over (key, counter) */
    return mix64(mix64(counter * 0x9e3779b97f4a7c15ull + key) ^ (key >> 7));
}
