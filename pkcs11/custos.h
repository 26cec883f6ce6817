/* custos.h -- Custos vendor extensions to PKCS#11 3.2: Custos attributes, mechanisms,
 * user types, return values and object classes, all allocated on the standard
 * *_VENDOR_DEFINED bases plus the Custos tag 0x4353 ("CS"). Includes pkcs11.h. */
#ifndef CUSTOS_H
#define CUSTOS_H 1

#include "pkcs11.h"

#define CUSTOS_VERSION_MAJOR  0
#define CUSTOS_VERSION_MINOR  1

/* Custos tag, OR-ed into every vendor-defined base so that Custos values
 * never collide with other vendors' extensions. */
#define CUSTOS_VENDOR_TAG  0x00435300UL  /* "CS" in bits 8..23 */

/* ---- Bases ------------------------------------------------------------
 * The tag keeps bit 30 clear: on attribute types that bit is
 * CKF_ARRAY_ATTRIBUTE, and no Custos attribute is an array. */
#define CKA_CUSTOS_BASE  (CKA_VENDOR_DEFINED | CUSTOS_VENDOR_TAG)
#define CKM_CUSTOS_BASE  (CKM_VENDOR_DEFINED | CUSTOS_VENDOR_TAG)
#define CKR_CUSTOS_BASE  (CKR_VENDOR_DEFINED | CUSTOS_VENDOR_TAG)
#define CKO_CUSTOS_BASE  (CKO_VENDOR_DEFINED | CUSTOS_VENDOR_TAG)
/* CK_USER_TYPE has no vendor-defined base in the standard; Custos user
 * types are documented vendor values above 0x80000000. */
#define CKU_CUSTOS_BASE  (0x80000000UL | CUSTOS_VENDOR_TAG)

/* ---- Attributes (on Custos secret-key objects) ------------------------ */
#define CKA_CUSTOS_FAMILY           (CKA_CUSTOS_BASE + 0x01UL) /* UTF-8: key-family name */
#define CKA_CUSTOS_VERSION          (CKA_CUSTOS_BASE + 0x02UL) /* CK_ULONG: key version within the family */
#define CKA_CUSTOS_STATE            (CKA_CUSTOS_BASE + 0x03UL) /* CK_ULONG: lifecycle state, CUSTOS_STATE_* */
#define CKA_CUSTOS_CREATED          (CKA_CUSTOS_BASE + 0x04UL) /* CK_ULONG: creation time, seconds since the epoch */
#define CKA_CUSTOS_ROTATED          (CKA_CUSTOS_BASE + 0x05UL) /* CK_ULONG: last rotation, seconds since the epoch */
#define CKA_CUSTOS_NOT_AFTER        (CKA_CUSTOS_BASE + 0x06UL) /* CK_ULONG: expiry, seconds since the epoch */
#define CKA_CUSTOS_ROTATION_PERIOD  (CKA_CUSTOS_BASE + 0x07UL) /* CK_ULONG: rotation interval, seconds */
#define CKA_CUSTOS_ENCRYPT_COUNT    (CKA_CUSTOS_BASE + 0x08UL) /* CK_ULONG, read-only: encryptions performed */
#define CKA_CUSTOS_ALLOWED_USERS    (CKA_CUSTOS_BASE + 0x09UL) /* UTF-8: comma-separated user names */

/* CKA_CUSTOS_STATE values */
#define CUSTOS_STATE_ACTIVE               1UL /* encrypt and decrypt */
#define CUSTOS_STATE_DECRYPT_ONLY         2UL /* rotated out: decrypt only */
#define CUSTOS_STATE_SUSPENDED            3UL /* no cryptographic use */
#define CUSTOS_STATE_PENDING_DESTRUCTION  4UL /* scheduled for destruction */

/* ---- Mechanisms ------------------------------------------------------- */
#define CKM_CUSTOS_REWRAP  (CKM_CUSTOS_BASE + 0x01UL) /* re-encrypt ciphertext under the family's current key */

/* ---- User types (C_Login / C_LoginUser) -------------------------------- */
/* Roles of a token user (docs/roles.md). A user logs in with
 * C_Login(CKU_USER, pin) (the PIN selects the user) or
 * C_LoginUser(CKU_USER, pin, name); an admin with CKU_SO. */
#define CUSTOS_ROLE_ADMIN     0x01UL /* users, policy, key-family lifecycle; no data keys */
#define CUSTOS_ROLE_GENERATE  0x02UL /* create DEKs, wrap, encrypt, sign: the write path */
#define CUSTOS_ROLE_DECRYPT   0x04UL /* unwrap DEKs, decrypt, verify: the read path */
#define CUSTOS_ROLE_AUDIT     0x08UL /* read, verify and export the audit trail; no key */

/* ---- Return values ---------------------------------------------------- */
#define CKR_CUSTOS_AUDIT_FAILED  (CKR_CUSTOS_BASE + 0x01UL) /* audit record could not be written; operation refused */

#endif /* CUSTOS_H */
