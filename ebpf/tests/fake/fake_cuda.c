/* A stand-in libcuda.so.1 for strand's tests: the driver's synchronize calls
 * with their signatures; each sleeps a known time, as a blocked host thread would. */
#include <unistd.h>

typedef struct CUstream_st* CUstream;
typedef struct CUevent_st* CUevent;
typedef int CUresult; /* CUDA_SUCCESS = 0, CUDA_ERROR_INVALID_HANDLE = 400 */

#define API __attribute__((visibility("default"), noinline))

API CUresult cuStreamSynchronize(CUstream s) { (void)s; usleep(3000); return 0; }
API CUresult cuCtxSynchronize(void) { usleep(2000); return 0; }
API CUresult cuEventSynchronize(CUevent e) { usleep(1000); return e ? 0 : 400; }
