/* Reference implementation of NCCL's commHash for strand's tests, written
 * from NCCL's release sources independently of strand's Rust code:
 *   hashref root VERSION IDHEX              commHash of a communicator from an id
 *   hashref split VERSION PARENT COUNT COLOR commHash of a child of ncclCommSplit
 * VERSION is the NCCL_VERSION_CODE (e.g. 22803). Prints 16 hex digits. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t djb2a(const char* s, int n) /* NCCL <= 2.25 getHash; char is signed on x86-64 */
{
	uint64_t h = 5381;
	for (int i = 0; i < n; i++) h = ((h << 5) + h) ^ (uint64_t)(int64_t)s[i];
	return h;
}

static void eat(uint64_t acc[2], const void* p, size_t n) /* NCCL >= 2.26 eatHash */
{
	const unsigned char* b = p;
	acc[0] ^= n;
	while (n) {
		acc[0] += acc[1];
		acc[1] ^= acc[0];
		acc[0] ^= acc[0] >> 31;
		acc[0] *= 0x9de62bbc8cef3ce3ULL;
		acc[1] ^= acc[1] >> 32;
		acc[1] *= 0x485cd6311b599e79ULL;
		uint64_t x = 0;
		size_t k = n < 8 ? n : 8;
		memcpy(&x, b, k);
		b += k, n -= k;
		acc[0] += x;
	}
}

static uint64_t digest(const uint64_t acc[2])
{
	uint64_t h = acc[0];
	h ^= h >> 31;
	h *= 0xbac3bd562846de6bULL;
	h += acc[1];
	h ^= h >> 32;
	h *= 0x995a187a14e7b445ULL;
	return h;
}

int main(int argc, char** argv)
{
	if (argc < 4) return 2;
	int code = atoi(argv[2]);
	int minor = code / 100 % 100; /* 2.x versions from 2.9 on: 2*10000 + minor*100 + patch */
	uint64_t h;
	if (strcmp(argv[1], "root") == 0) {
		char id[128];
		if (strlen(argv[3]) != 256) return 2;
		for (int i = 0; i < 128; i++) {
			unsigned v;
			sscanf(argv[3] + 2 * i, "%2x", &v);
			id[i] = (char)v;
		}
		if (minor >= 26) {
			uint64_t acc[2] = { 1, 1 };
			eat(acc, id, 128);
			h = digest(acc);
		} else {
			h = djb2a(id, 128);
		}
	} else if (strcmp(argv[1], "split") == 0 && argc == 6) {
		uint64_t parent = strtoull(argv[3], NULL, 16);
		int count = atoi(argv[4]), color = atoi(argv[5]);
		if (minor >= 26) {
			uint64_t acc[2] = { 1, 1 };
			eat(acc, &parent, sizeof parent);
			eat(acc, &count, sizeof count);
			eat(acc, &color, sizeof color);
			h = digest(acc);
		} else {
			char id[128] = { 0 };
			if (minor >= 24) snprintf(id, sizeof id, "%016" PRIx64 "-%d-%d", parent, count, color);
			else snprintf(id, sizeof id, "%016" PRIx64 "-%d", parent, color);
			h = djb2a(id, 128);
		}
	} else {
		return 2;
	}
	printf("%016" PRIx64 "\n", h);
	return 0;
}
