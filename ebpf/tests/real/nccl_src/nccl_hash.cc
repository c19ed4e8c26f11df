// Prints NCCL's commHash of a 128-byte unique id (256 hex digits), computed
// by the getHash of one NCCL release, included unchanged as NCCL_SLICE
// (a file written by extract.sh), the way init.cc calls it:
//   commHash = getHash(commId->internal, NCCL_UNIQUE_ID_BYTES);
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#define __host__
#define __device__
#include NCCL_SLICE

int main(int argc, char** argv) {
  char id[128];
  if (argc != 2 || strlen(argv[1]) != 256) return 2;
  for (int i = 0; i < 128; i++) {
    unsigned v;
    if (sscanf(argv[1] + 2 * i, "%2x", &v) != 1) return 2;
    id[i] = (char)v;
  }
  printf("%016llx\n", (unsigned long long)getHash(id, 128));
  return 0;
}
