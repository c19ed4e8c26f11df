/* Verbatim from NVIDIA/nccl v2.16.2-1, src/misc/utils.cc, lines 68-75
 * (written by extract.sh; NCCL's license: LICENSE.txt of that release). */
uint64_t getHash(const char* string, int n) {
  // Based on DJB2a, result = result * 33 ^ char
  uint64_t result = 5381;
  for (int c = 0; c < n; c++) {
    result = ((result << 5) + result) ^ string[c];
  }
  return result;
}
