/* A stand-in for the CUDA runtime (libcudart.so) in host memory, so that the NCCL engine's
 * staging (src/dist/nccl.c) runs on machines without GPUs: "device" memory is malloc'ed,
 * copies are memcpy, streams run everything at once and events are always complete.
 * Built only for tests/dist/run.sh; never installed. */
#include <stdlib.h>
#include <string.h>

int cudaGetDeviceCount(int *n);
int cudaSetDevice(int d);
int cudaStreamCreate(void **s);
int cudaMalloc(void **p, size_t n);
int cudaFree(void *p);
int cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, void *stream);
int cudaEventCreate(void **e);
int cudaEventRecord(void *e, void *stream);
int cudaEventQuery(void *e);
int cudaEventDestroy(void *e);
const char *cudaGetErrorString(int code);

int
cudaGetDeviceCount(int *n)
{
    *n = 1;
    return 0;
}

int
cudaSetDevice(int d)
{
    return d == 0 ? 0 : 101; /* cudaErrorInvalidDevice */
}

int
cudaStreamCreate(void **s)
{
    static int stream;
    *s = &stream;
    return 0;
}

int
cudaMalloc(void **p, size_t n)
{
    *p = malloc(n);
    return *p ? 0 : 2; /* cudaErrorMemoryAllocation */
}

int
cudaFree(void *p)
{
    free(p);
    return 0;
}

int
cudaMemcpyAsync(void *dst, const void *src, size_t n, int kind, void *stream)
{
    (void)kind, (void)stream;
    if (n > 0) {
        memcpy(dst, src, n);
    }
    return 0;
}

int
cudaEventCreate(void **e)
{
    *e = malloc(1);
    return *e ? 0 : 2;
}

int
cudaEventRecord(void *e, void *stream)
{
    (void)e, (void)stream;
    return 0;
}

int
cudaEventQuery(void *e)
{
    (void)e;
    return 0;
}

int
cudaEventDestroy(void *e)
{
    free(e);
    return 0;
}

const char *
cudaGetErrorString(int code)
{
    return code ? "fake CUDA error" : "no error";
}
