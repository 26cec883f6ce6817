/* The names of PKCS#11 return values, one table for the module (the audit
 * trail) and the custos command. */
#ifndef CUSTOS_UTIL_CKR_H
#define CUSTOS_UTIL_CKR_H

#include "pkcs11.h"

/* "CKR_PIN_INCORRECT" and the like; NULL for a value the table lacks. */
const char *ckr_name(CK_RV rv);

#endif
