/* libFuzzer target for name.c. The input is used whole as a repository name, a
 * tag and a reference; split at its first '\n' it is a (pattern, name) pair for
 * name_matches_pattern. Verdicts are checked against independent oracles: POSIX
 * regular expressions for the two grammars and fnmatch(3) for patterns. */
#include <fnmatch.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "name.h"
#include "util.h"

/* distribution-spec grammars, anchored; compiled once and kept for the process. */
static const char repo_re[] =
    "^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$";
static const char tag_re[] = "^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$";

static regex_t repo_rx;
static regex_t tag_rx;
static bool is_compiled;

static void compile_once(void)
{
    if (is_compiled)
        return;
    AZ(regcomp(&repo_rx, repo_re, REG_EXTENDED | REG_NOSUB));
    AZ(regcomp(&tag_rx, tag_re, REG_EXTENDED | REG_NOSUB));
    is_compiled = true;
}

/* fnmatch is a fair oracle only for patterns whose sole special character is
 * '*', and it backtracks exponentially, so keep its inputs small. */
static bool fnmatch_is_usable(const char *pattern, const char *name)
{
    size_t stars = 0;
    if (strlen(pattern) > 64 || strlen(name) > 64)
        return false;
    for (const char *p = pattern; *p; p++) {
        if (*p == '?' || *p == '[' || *p == '\\')
            return false;
        if (*p == '*')
            stars++;
    }
    return stars <= 4;
}

int fuzz_name_one(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    bool has_nul = memchr(s, '\0', size) != NULL;
    char *z = xstrndup(s, size);

    compile_once();

    bool is_repo = name_is_valid_repo(s, size);
    if (is_repo) {
        ASSERT(size >= 1 && size <= NAME_MAX_BYTES);
        ASSERT(!has_nul);
    }
    if (!has_nul && size <= NAME_MAX_BYTES)
        ASSERT(is_repo == (regexec(&repo_rx, z, 0, NULL, 0) == 0));

    bool is_tag = name_is_valid_tag(s, size);
    if (is_tag)
        ASSERT(size >= 1 && size <= TAG_MAX_BYTES && !has_nul);
    if (!has_nul)
        ASSERT(is_tag == (regexec(&tag_rx, z, 0, NULL, 0) == 0));
    /* A tag never looks like a digest reference. */
    bool is_digest = name_reference_is_digest(s, size);
    ASSERT(is_digest == (memchr(s, ':', size) != NULL));
    if (is_tag)
        ASSERT(!is_digest);

    /* Pattern and name: z holds both, split at the first newline. */
    char *nl = strchr(z, '\n');
    const char *pattern = z;
    const char *name = "";
    if (nl != NULL) {
        *nl = '\0';
        name = nl + 1;
    }
    bool is_match = name_matches_pattern(pattern, name);
    if (fnmatch_is_usable(pattern, name))
        ASSERT(is_match == (fnmatch(pattern, name, 0) == 0));
    /* Laws that hold for any input. */
    ASSERT(name_matches_pattern("*", name));
    /* Any string matches itself as a pattern: each '*' can match itself. */
    ASSERT(name_matches_pattern(name, name));
    if (strchr(pattern, '*') == NULL)
        ASSERT(is_match == (strcmp(pattern, name) == 0));

    free(z);
    return 0;
}

#ifndef FUZZ_REPLAY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_name_one(data, size);
}
#endif
