/* Shared by the compliance report (mgmt_residency.c), the compliance matrix check
 * (mgmt_compliance_check.c) and image versions (mgmt_image_versions.c). */
#ifndef MERIDIAN_MGMT_COMPLIANCE_H
#define MERIDIAN_MGMT_COMPLIANCE_H

#include <jansson.h>

#include "err.h"

struct registry;

/* Every region's holdings: {REGION: holdings or null (no answer)}; *regions_out gets the
 * region names, sorted (NULL-terminated; free with mgmt_names_free). */
json_t *mgmt_all_holdings(struct registry *reg, char ***regions_out);
void mgmt_names_free(char **names);

/* The document `GET image-versions?repository=R&reference=VERSION` answers; NULL with e set. */
json_t *mgmt_image_version_doc(struct registry *reg, const char *repo, const char *version,
                               struct err *e);
/* The version of definition repo that is latest in region (free it); NULL when none or on
 * an error (e set). */
char *mgmt_image_latest(struct registry *reg, const char *repo, const char *region, struct err *e);

#endif
