/* Placement of a blob's copies on volumes (blobstore_volumes.c): the choice alone, apart
 * from the files, so that it can be tested by itself. */
#ifndef MERIDIAN_BLOBSTORE_VOLUMES_H
#define MERIDIAN_BLOBSTORE_VOLUMES_H

#include <stdbool.h>
#include <stddef.h>

#include "blobstore.h"

/* Chooses which of the n volumes v should hold a blob's `copies` copies: distinct volumes
 * of class klass (NULL: any class), a zone not used yet by an earlier choice before one
 * already used (volumes without a zone count as each their own), and among those a
 * volume that already holds a copy (has[i]) before one that would need a new copy, then
 * the lower index. Sets chosen[i] and returns how many were chosen: fewer than copies
 * only when the class has fewer volumes. */
size_t volumes_choose(const struct blobstore_volume *v, size_t n, const bool *has,
                      const char *klass, unsigned copies, bool *chosen);

/* Parses one --volume spec "NAME=PATH[,class=C][,zone=Z]" into its parts (malloc'd;
 * freed by the caller). 0, or -1 with e set (ERR_BAD_REQUEST). */
int volumes_parse_spec(const char *spec, char **name, char **path, char **klass, char **zone,
                       struct err *e);

#endif
