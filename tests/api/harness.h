/* The API test harness: loads the built module with dlopen exactly as a
 * client does (C_GetFunctionList for the 2.40 list, C_GetInterface for 3.0
 * and 3.2), gives the run its own store and configuration in a temp dir,
 * and offers the helpers and CK_RV-aware assertions every suite uses. */
#ifndef CUSTOS_TESTS_API_HARNESS_H
#define CUSTOS_TESTS_API_HARNESS_H

#define CK_PKCS11_NO_PROTOTYPES 1 /* dlopen only: never link the module */

#include <stddef.h>
#include <stdint.h>
#include <CUnit/CUnit.h>
#include "pkcs11.h"

/* ---- the module -------------------------------------------------------- */
extern CK_FUNCTION_LIST_PTR F;        /* from C_GetFunctionList (2.40) */
extern CK_FUNCTION_LIST_3_0_PTR F30;  /* C_GetInterface("PKCS 11", 3.0) */
extern CK_FUNCTION_LIST_3_2_PTR F32;  /* C_GetInterface("PKCS 11", 3.2) */
extern CK_C_GetFunctionList h_get_function_list;
extern CK_C_GetInterfaceList h_get_interface_list;
extern CK_C_GetInterface h_get_interface;

/* Loads $CUSTOS_MODULE, makes the temp dir and config, sets CUSTOS_CONF.
 * Returns 0 on success (a message on stderr otherwise). */
int h_load(void);
/* Finalizes if needed, dlcloses, removes the temp dir (only in the process
 * that made it, never in a forked child). */
void h_unload(void);
const char *h_tmpdir(void);

/* ---- assertions -------------------------------------------------------- */
const char *h_rv_name(CK_RV rv);
void h_check_rv(CK_RV got, CK_RV want, const char *what, const char *file,
                unsigned line, CU_BOOL fatal);
void h_check_rv2(CK_RV got, CK_RV a, CK_RV b, const char *what,
                 const char *file, unsigned line);
void h_check(int ok, const char *what, const char *file, unsigned line,
             CU_BOOL fatal);

/* RV_EQ(call, CKR_x, "what is checked"): on failure the CUnit report says
 * what, the expected and the returned CKR_ name. */
#define RV_EQ(expr, want, what) \
    h_check_rv((expr), (want), (what), __FILE__, __LINE__, CU_FALSE)
/* Same, but a failure ends the test (for set-up steps later checks need). */
#define RV_REQ(expr, want, what) \
    h_check_rv((expr), (want), (what), __FILE__, __LINE__, CU_TRUE)
/* The standard allows either code. */
#define RV_IN2(expr, a, b, what) \
    h_check_rv2((expr), (a), (b), (what), __FILE__, __LINE__)
#define CHECK(cond, what) h_check(!!(cond), (what), __FILE__, __LINE__, CU_FALSE)
#define REQUIRE(cond, what) h_check(!!(cond), (what), __FILE__, __LINE__, CU_TRUE)

/* ---- tokens, sessions, keys -------------------------------------------- */
#define H_PIN_MAX 64
typedef struct h_token {
    CK_SLOT_ID slot;
    char label[33];             /* NUL-terminated, <= 32 chars */
    char so_pin[H_PIN_MAX];     /* hex of random bytes, made at run time */
    char user_pin[H_PIN_MAX];
} h_token;

/* The token most suites share: created by main() before the suites run,
 * user PIN set; tests must not change its PINs or wipe it. */
extern h_token H;

/* Per-test set-up/tear-down: C_Initialize(NULL) and C_Finalize(NULL). */
void h_setup(void);
void h_teardown(void);

/* Random bytes from the OS (not the module), and as lower-case hex. */
void h_random(void *buf, size_t len);
void h_random_hex(char *out, size_t nbytes); /* out holds 2*nbytes+1 */
/* Hex to bytes; returns the length (asserts the input is well formed). */
size_t h_unhex(const char *hex, uint8_t *out, size_t cap);
/* A 32-byte blank-padded label from a C string. */
void h_pad(CK_UTF8CHAR *dst, size_t dstlen, const char *src);
/* Is buf[0..len) printable ASCII without NUL (blank-padded field)? */
int h_blank_padded(const CK_UTF8CHAR *buf, size_t len);

/* The slot holding the uninitialised token (exactly one must exist). */
CK_RV h_find_empty_slot(CK_SLOT_ID *slot);
/* Initialise a fresh token: random SO and user PINs, label prefix plus
 * random suffix; with_user_pin = 0 leaves the user PIN unset. Fatal on
 * failure. Leaves no session open. */
void h_new_token(h_token *t, const char *prefix, int with_user_pin);

CK_SESSION_HANDLE h_open(CK_SLOT_ID slot, int rw);          /* fatal */
void h_login(CK_SESSION_HANDLE s, CK_USER_TYPE u, const char *pin); /* fatal */
CK_RV h_login_rv(CK_SESSION_HANDLE s, CK_USER_TYPE u, const char *pin);
/* RW session on H with the user logged in. */
CK_SESSION_HANDLE h_user_session(void);

/* C_GenerateKey(CKM_AES_KEY_GEN), session object with CKA_ENCRYPT/DECRYPT
 * true, plus extra attributes (override by repetition is not used: pass
 * only attributes not in the base). Fatal on failure. */
CK_OBJECT_HANDLE h_aes_key(CK_SESSION_HANDLE s, CK_ULONG len,
                           const CK_ATTRIBUTE *extra, CK_ULONG nextra);
/* C_CreateObject of a secret key with a known value. Fatal on failure. */
CK_OBJECT_HANDLE h_import_key(CK_SESSION_HANDLE s, CK_KEY_TYPE kt,
                              const uint8_t *value, size_t len,
                              const CK_ATTRIBUTE *extra, CK_ULONG nextra);
/* A session data object with the given label (public). Fatal on failure. */
CK_OBJECT_HANDLE h_data_object(CK_SESSION_HANDLE s, const char *label);

/* Attribute reads; return CKR_* of C_GetAttributeValue. */
CK_RV h_get_ulong(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                  CK_ATTRIBUTE_TYPE t, CK_ULONG *v);
CK_RV h_get_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o,
                 CK_ATTRIBUTE_TYPE t, CK_BBOOL *v);
/* Number of objects matching the template (all batches). */
CK_ULONG h_count(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n);

/* AES-GCM parameters in the standard's 48-byte layout. */
void h_gcm(CK_GCM_PARAMS *p, CK_MECHANISM *m, uint8_t *iv, CK_ULONG ivlen,
           uint8_t *aad, CK_ULONG aadlen, CK_ULONG tagbits);
/* One GCM encrypt + decrypt round trip of 64 bytes with a unique IV
 * (counter); returns CKR_OK or the first failure (no CUnit calls, usable in
 * threads and forked children). */
CK_RV h_gcm_round_trip(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, uint32_t ctr);

/* Addressable booleans for templates. */
extern CK_BBOOL h_true, h_false;

#define H_BOOL(v) ((CK_BBOOL)((v) ? CK_TRUE : CK_FALSE))
#define NELEM(a) (sizeof(a) / sizeof((a)[0]))
#define H_BAD_SESSION ((CK_SESSION_HANDLE)0x7ffffff1UL) /* never issued */
#define H_BAD_OBJECT ((CK_OBJECT_HANDLE)0x7ffffff3UL)
#define H_BAD_SLOT ((CK_SLOT_ID)0x7ffffff5UL)

/* ---- suites (one registration function per t_*.c) ----------------------- */
int t_general_register(void);
int t_session_register(void);
int t_object_register(void);
int t_cipher_register(void);
int t_keys_register(void);
int t_digest_register(void);
int t_threads_register(void);
int t_fork_register(void);
int t_roles_register(void);

/* Registers one suite with per-test h_setup/h_teardown. */
typedef struct h_case {
    const char *name;
    void (*fn)(void);
} h_case;
#define H_CASE(f) { #f, f }
int h_add_suite(const char *name, const h_case *cases, size_t n);

#endif
