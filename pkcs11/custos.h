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

/* ---- Roles ------------------------------------------------------------ */
/* Roles of a token user (docs/roles.md). A user logs in with
 * C_Login(CKU_USER, pin) (the PIN selects the user) or
 * C_LoginUser(CKU_USER, pin, name); an admin with CKU_SO. */
#define CUSTOS_ROLE_ADMIN     0x01UL /* users, policy, key-family lifecycle; no data keys */
#define CUSTOS_ROLE_GENERATE  0x02UL /* create DEKs, wrap, encrypt, sign: the write path */
#define CUSTOS_ROLE_DECRYPT   0x04UL /* unwrap DEKs, decrypt, verify: the read path */
#define CUSTOS_ROLE_AUDIT     0x08UL /* read, verify and export the audit trail; no key */

/* ---- Return values ---------------------------------------------------- */
#define CKR_CUSTOS_AUDIT_FAILED  (CKR_CUSTOS_BASE + 0x01UL) /* audit record could not be written; operation refused */

/* ---- The "Vendor Custos" interface ------------------------------------
 * C_GetInterface("Vendor Custos", {1, 0}) returns a CK_CUSTOS_FUNCTION_LIST:
 * user management for admins (docs/roles.md). Every function takes a
 * session in which an admin (CUSTOS_ROLE_ADMIN) is logged in, R/W for the
 * changing ones: CKR_USER_NOT_LOGGED_IN otherwise, CKR_SESSION_READ_ONLY for
 * an R/O session. Names are UTF-8, 1..63 bytes, no ',' and not starting
 * with '*'. A user with CUSTOS_ROLE_ADMIN logs in as CKU_SO and has no other
 * role; everyone else logs in as CKU_USER. */
#define CUSTOS_INTERFACE_NAME "Vendor Custos"

#define CKF_CUSTOS_USER_DISABLED 0x1UL  /* may not log in */
#define CKF_CUSTOS_USER_LOCKED   0x2UL  /* too many wrong PINs */

typedef struct CK_CUSTOS_USER_INFO {
    CK_UTF8CHAR name[64];    /* NUL-terminated */
    CK_ULONG roles;          /* CUSTOS_ROLE_* */
    CK_FLAGS flags;          /* CKF_CUSTOS_USER_* */
    CK_ULONG failures;       /* consecutive wrong PINs */
} CK_CUSTOS_USER_INFO;
typedef CK_CUSTOS_USER_INFO CK_PTR CK_CUSTOS_USER_INFO_PTR;

typedef struct CK_CUSTOS_FUNCTION_LIST {
    CK_VERSION version; /* 1.0 */
    /* Add a user with roles and a PIN. CKR_ARGUMENTS_BAD for a bad name or
     * roles (admin combined with another role, none, unknown bits),
     * CKR_PIN_LEN_RANGE, CKR_PIN_INVALID when the PIN is another user's,
     * CKR_ACTION_PROHIBITED when the name exists. */
    CK_RV (*C_CustosUserAdd)(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                             CK_ULONG roles, CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen);
    /* Remove a user (not oneself): CKR_ACTION_PROHIBITED; unknown:
     * CKR_ARGUMENTS_BAD. */
    CK_RV (*C_CustosUserRemove)(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen);
    /* Change roles; between admin and non-admin: CKR_ACTION_PROHIBITED
     * (remove and add again: the PIN selects by user type). */
    CK_RV (*C_CustosUserSetRoles)(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                                  CK_ULONG roles);
    /* Set a new PIN (and clear the lockout). */
    CK_RV (*C_CustosUserSetPIN)(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                                CK_UTF8CHAR_PTR pPin, CK_ULONG ulPinLen);
    /* Enable or disable logins (not oneself). */
    CK_RV (*C_CustosUserEnable)(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pName, CK_ULONG ulNameLen,
                                CK_BBOOL enabled);
    /* List users, two-call rule (pList NULL: *pulCount = number). */
    CK_RV (*C_CustosUserList)(CK_SESSION_HANDLE hSession, CK_CUSTOS_USER_INFO_PTR pList,
                              CK_ULONG_PTR pulCount);
    /* Rotate a key family now (docs/key-families.md): *pulNewVersion gets
     * the version that is current afterwards. If pulNewVersion is not NULL
     * and *pulNewVersion is not 0 on entry, it is the version the caller
     * saw as current, and the family is rotated only if that is still so
     * (compare-and-swap: of callers racing with the same version, exactly
     * one rotates; the others get the new version back, CKR_OK). Unknown
     * family: CKR_ARGUMENTS_BAD. */
    CK_RV (*C_CustosKeyRotate)(CK_SESSION_HANDLE hSession, CK_UTF8CHAR_PTR pFamily,
                               CK_ULONG ulFamilyLen, CK_ULONG_PTR pulNewVersion);
    /* Rotate every family whose rotation period has passed (cron, systemd
     * timers): *pulRotated gets how many were rotated. */
    CK_RV (*C_CustosKeyRotateDue)(CK_SESSION_HANDLE hSession, CK_ULONG_PTR pulRotated);
} CK_CUSTOS_FUNCTION_LIST;
typedef CK_CUSTOS_FUNCTION_LIST CK_PTR CK_CUSTOS_FUNCTION_LIST_PTR;

#endif /* CUSTOS_H */
