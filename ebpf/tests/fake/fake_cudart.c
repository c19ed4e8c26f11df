/* A stand-in libcudart.so for strand's tests. cudaStreamSynchronize goes
 * through the driver's cuStreamSynchronize, as the real runtime does, so the
 * test sees that nested synchronize calls are reported once. */
#include <unistd.h>

typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
typedef int cudaError_t; /* cudaSuccess = 0, cudaErrorInvalidResourceHandle = 400 */

extern int cuStreamSynchronize(cudaStream_t s);

#define API __attribute__((visibility("default"), noinline))

API cudaError_t cudaStreamSynchronize(cudaStream_t s) { usleep(1000); return cuStreamSynchronize(s); }
API cudaError_t cudaDeviceSynchronize(void) { usleep(4000); return 0; }
API cudaError_t cudaEventSynchronize(cudaEvent_t e) { usleep(1000); return e ? 0 : 400; }
