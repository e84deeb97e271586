/* Entry points shared by the libFuzzer targets and the corpus replay unit test.
 * Each fuzz_<target>.c defines fuzz_<target>_one and, unless built with
 * -DFUZZ_REPLAY, an LLVMFuzzerTestOneInput that calls it. A property violation
 * aborts (ASSERT), which both libFuzzer and the replay test report as a failure. */
#ifndef MERIDIAN_FUZZ_H
#define MERIDIAN_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int fuzz_name_one(const uint8_t *data, size_t size);
int fuzz_digest_one(const uint8_t *data, size_t size);
int fuzz_range_one(const uint8_t *data, size_t size);
int fuzz_manifest_one(const uint8_t *data, size_t size);
int fuzz_auth_header_one(const uint8_t *data, size_t size);
int fuzz_token_one(const uint8_t *data, size_t size);
int fuzz_request_head_one(const uint8_t *data, size_t size);

#endif
