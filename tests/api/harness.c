/* The API test harness: module loading through dlopen, the per-run temp
 * store and config (CUSTOS_CONF), CK_RV-naming assertions and the token,
 * session and key helpers the suites share. Nothing from src/ is used:
 * the module is seen exactly as a client sees it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"

#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

CK_FUNCTION_LIST_PTR F;
CK_FUNCTION_LIST_3_0_PTR F30;
CK_FUNCTION_LIST_3_2_PTR F32;
CK_C_GetFunctionList h_get_function_list;
CK_C_GetInterfaceList h_get_interface_list;
CK_C_GetInterface h_get_interface;
h_token H;
CK_BBOOL h_true = CK_TRUE, h_false = CK_FALSE;

static void *lib;
static char tmpdir[64];
static pid_t owner;

/* ---- return-value names ------------------------------------------------- */
#define R(x) { x, #x },
static const struct {
    CK_RV rv;
    const char *name;
} RV_NAMES[] = {
    R(CKR_OK) R(CKR_CANCEL) R(CKR_HOST_MEMORY) R(CKR_SLOT_ID_INVALID)
    R(CKR_GENERAL_ERROR) R(CKR_FUNCTION_FAILED) R(CKR_ARGUMENTS_BAD)
    R(CKR_NO_EVENT) R(CKR_NEED_TO_CREATE_THREADS) R(CKR_CANT_LOCK)
    R(CKR_ATTRIBUTE_READ_ONLY) R(CKR_ATTRIBUTE_SENSITIVE)
    R(CKR_ATTRIBUTE_TYPE_INVALID) R(CKR_ATTRIBUTE_VALUE_INVALID)
    R(CKR_ACTION_PROHIBITED) R(CKR_DATA_INVALID) R(CKR_DATA_LEN_RANGE)
    R(CKR_DEVICE_ERROR) R(CKR_DEVICE_MEMORY) R(CKR_DEVICE_REMOVED)
    R(CKR_ENCRYPTED_DATA_INVALID) R(CKR_ENCRYPTED_DATA_LEN_RANGE)
    R(CKR_AEAD_DECRYPT_FAILED) R(CKR_FUNCTION_CANCELED)
    R(CKR_FUNCTION_NOT_PARALLEL) R(CKR_FUNCTION_NOT_SUPPORTED)
    R(CKR_KEY_HANDLE_INVALID) R(CKR_KEY_SIZE_RANGE)
    R(CKR_KEY_TYPE_INCONSISTENT) R(CKR_KEY_NOT_NEEDED) R(CKR_KEY_CHANGED)
    R(CKR_KEY_NEEDED) R(CKR_KEY_INDIGESTIBLE)
    R(CKR_KEY_FUNCTION_NOT_PERMITTED) R(CKR_KEY_NOT_WRAPPABLE)
    R(CKR_KEY_UNEXTRACTABLE) R(CKR_MECHANISM_INVALID)
    R(CKR_MECHANISM_PARAM_INVALID) R(CKR_OBJECT_HANDLE_INVALID)
    R(CKR_OPERATION_ACTIVE) R(CKR_OPERATION_NOT_INITIALIZED)
    R(CKR_PIN_INCORRECT) R(CKR_PIN_INVALID) R(CKR_PIN_LEN_RANGE)
    R(CKR_PIN_EXPIRED) R(CKR_PIN_LOCKED) R(CKR_SESSION_CLOSED)
    R(CKR_SESSION_COUNT) R(CKR_SESSION_HANDLE_INVALID)
    R(CKR_SESSION_PARALLEL_NOT_SUPPORTED) R(CKR_SESSION_READ_ONLY)
    R(CKR_SESSION_EXISTS) R(CKR_SESSION_READ_ONLY_EXISTS)
    R(CKR_SESSION_READ_WRITE_SO_EXISTS) R(CKR_SIGNATURE_INVALID)
    R(CKR_SIGNATURE_LEN_RANGE) R(CKR_TEMPLATE_INCOMPLETE)
    R(CKR_TEMPLATE_INCONSISTENT) R(CKR_TOKEN_NOT_PRESENT)
    R(CKR_TOKEN_NOT_RECOGNIZED) R(CKR_TOKEN_WRITE_PROTECTED)
    R(CKR_UNWRAPPING_KEY_HANDLE_INVALID) R(CKR_UNWRAPPING_KEY_SIZE_RANGE)
    R(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT) R(CKR_USER_ALREADY_LOGGED_IN)
    R(CKR_USER_NOT_LOGGED_IN) R(CKR_USER_PIN_NOT_INITIALIZED)
    R(CKR_USER_TYPE_INVALID) R(CKR_USER_ANOTHER_ALREADY_LOGGED_IN)
    R(CKR_USER_TOO_MANY_TYPES) R(CKR_WRAPPED_KEY_INVALID)
    R(CKR_WRAPPED_KEY_LEN_RANGE) R(CKR_WRAPPING_KEY_HANDLE_INVALID)
    R(CKR_WRAPPING_KEY_SIZE_RANGE) R(CKR_WRAPPING_KEY_TYPE_INCONSISTENT)
    R(CKR_RANDOM_SEED_NOT_SUPPORTED) R(CKR_RANDOM_NO_RNG)
    R(CKR_DOMAIN_PARAMS_INVALID) R(CKR_CURVE_NOT_SUPPORTED)
    R(CKR_BUFFER_TOO_SMALL) R(CKR_SAVED_STATE_INVALID)
    R(CKR_INFORMATION_SENSITIVE) R(CKR_STATE_UNSAVEABLE)
    R(CKR_CRYPTOKI_NOT_INITIALIZED) R(CKR_CRYPTOKI_ALREADY_INITIALIZED)
    R(CKR_MUTEX_BAD) R(CKR_MUTEX_NOT_LOCKED) R(CKR_NEW_PIN_MODE)
    R(CKR_NEXT_OTP) R(CKR_EXCEEDED_MAX_ITERATIONS)
    R(CKR_FIPS_SELF_TEST_FAILED) R(CKR_LIBRARY_LOAD_FAILED)
    R(CKR_PIN_TOO_WEAK) R(CKR_PUBLIC_KEY_INVALID) R(CKR_FUNCTION_REJECTED)
    R(CKR_TOKEN_RESOURCE_EXCEEDED) R(CKR_OPERATION_CANCEL_FAILED)
    R(CKR_KEY_EXHAUSTED) R(CKR_PENDING) R(CKR_SESSION_ASYNC_NOT_SUPPORTED)
    R(CKR_SEED_RANDOM_REQUIRED) R(CKR_OPERATION_NOT_VALIDATED)
    R(CKR_TOKEN_NOT_INITIALIZED) R(CKR_PARAMETER_SET_NOT_SUPPORTED)
};
#undef R

const char *h_rv_name(CK_RV rv)
{
    static __thread char unknown[32];
    for (size_t i = 0; i < NELEM(RV_NAMES); i++)
        if (RV_NAMES[i].rv == rv)
            return RV_NAMES[i].name;
    snprintf(unknown, sizeof(unknown), "CKR_0x%08lX", (unsigned long)rv);
    return unknown;
}

/* CUnit copies the condition string of a failure, so a stack buffer is
 * fine; the message names what was checked and both codes. */
void h_check_rv(CK_RV got, CK_RV want, const char *what, const char *file,
                unsigned line, CU_BOOL fatal)
{
    char msg[512];
    char w[40];
    snprintf(w, sizeof(w), "%s", h_rv_name(want));
    snprintf(msg, sizeof(msg), "%s: expected %s, got %s", what, w, h_rv_name(got));
    CU_assertImplementation(got == want ? CU_TRUE : CU_FALSE, line, msg, file, "",
                            fatal);
}

void h_check_rv2(CK_RV got, CK_RV a, CK_RV b, const char *what,
                 const char *file, unsigned line)
{
    char msg[512];
    char wa[40], wb[40];
    snprintf(wa, sizeof(wa), "%s", h_rv_name(a));
    snprintf(wb, sizeof(wb), "%s", h_rv_name(b));
    snprintf(msg, sizeof(msg), "%s: expected %s or %s, got %s", what, wa, wb,
             h_rv_name(got));
    CU_assertImplementation((got == a || got == b) ? CU_TRUE : CU_FALSE, line,
                            msg, file, "", CU_FALSE);
}

void h_check(int ok, const char *what, const char *file, unsigned line,
             CU_BOOL fatal)
{
    CU_assertImplementation(ok ? CU_TRUE : CU_FALSE, line, what, file, "", fatal);
}

/* ---- loading ------------------------------------------------------------ */
static int write_config(void)
{
    char path[128], store[96];
    snprintf(store, sizeof(store), "%s/store", tmpdir);
    if (mkdir(store, 0700) != 0) {
        perror("mkdir store");
        return -1;
    }
    snprintf(path, sizeof(path), "%s/custos.conf", tmpdir);
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror("custos.conf");
        return -1;
    }
    /* PBKDF2 with 1,000 iterations keeps logins fast (module-behaviour.md). */
    fprintf(f,
            "[store]\npath = %s\n"
            "[pin]\nkdf = pbkdf2\npbkdf2_iterations = 1000\nmax_retries = 10\n",
            store);
    if (fclose(f) != 0)
        return -1;
    return setenv("CUSTOS_CONF", path, 1);
}

int h_load(void)
{
    const char *mod = getenv("CUSTOS_MODULE");
    if (mod == NULL || *mod == '\0') {
        fprintf(stderr, "CUSTOS_MODULE is not set (path of custos-pkcs11.so)\n");
        return -1;
    }
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/custos-api-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    owner = getpid();
    if (write_config() != 0)
        return -1;
    lib = dlopen(mod, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        fprintf(stderr, "dlopen %s: %s\n", mod, dlerror());
        return -1;
    }
    *(void **)&h_get_function_list = dlsym(lib, "C_GetFunctionList");
    *(void **)&h_get_interface_list = dlsym(lib, "C_GetInterfaceList");
    *(void **)&h_get_interface = dlsym(lib, "C_GetInterface");
    if (h_get_function_list == NULL || h_get_interface_list == NULL ||
        h_get_interface == NULL) {
        fprintf(stderr, "module lacks C_GetFunctionList/C_GetInterfaceList/C_GetInterface\n");
        return -1;
    }
    CK_RV rv = h_get_function_list(&F);
    if (rv != CKR_OK || F == NULL) {
        fprintf(stderr, "C_GetFunctionList: %s\n", h_rv_name(rv));
        return -1;
    }
    CK_INTERFACE_PTR itf = NULL;
    CK_VERSION v30 = { 3, 0 }, v32 = { 3, 2 };
    rv = h_get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &itf, 0);
    if (rv != CKR_OK || itf == NULL) {
        fprintf(stderr, "C_GetInterface(3.0): %s\n", h_rv_name(rv));
        return -1;
    }
    F30 = itf->pFunctionList;
    rv = h_get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v32, &itf, 0);
    if (rv != CKR_OK || itf == NULL) {
        fprintf(stderr, "C_GetInterface(3.2): %s\n", h_rv_name(rv));
        return -1;
    }
    F32 = itf->pFunctionList;
    return 0;
}

const char *h_tmpdir(void)
{
    return tmpdir;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void h_unload(void)
{
    if (owner != getpid())
        return;
    if (F != NULL)
        (void)F->C_Finalize(NULL);
    if (lib != NULL && getenv("CUSTOS_API_NO_DLCLOSE") == NULL)
        dlclose(lib);
    lib = NULL;
    F = NULL;
    if (tmpdir[0] != '\0' && getenv("CUSTOS_API_KEEP_TMP") == NULL)
        (void)nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    tmpdir[0] = '\0';
}

/* ---- suites ----------------------------------------------------------- */
void h_setup(void)
{
    /* A fatal assertion in the previous test may have skipped its
     * teardown: start from a finalized library either way. */
    (void)F->C_Finalize(NULL);
    CK_RV rv = F->C_Initialize(NULL);
    if (rv != CKR_OK)
        fprintf(stderr, "h_setup: C_Initialize: %s\n", h_rv_name(rv));
}

void h_teardown(void)
{
    (void)F->C_Finalize(NULL);
}

int h_add_suite(const char *name, const h_case *cases, size_t n)
{
    CU_pSuite s = CU_add_suite_with_setup_and_teardown(name, NULL, NULL, h_setup,
                                                       h_teardown);
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (CU_add_test(s, cases[i].name, cases[i].fn) == NULL)
            return -1;
    return 0;
}

/* ---- bytes and strings -------------------------------------------------- */
void h_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            abort();
        }
        p += r;
        len -= (size_t)r;
    }
}

void h_random_hex(char *out, size_t nbytes)
{
    static const char X[] = "0123456789abcdef";
    uint8_t b[64];
    if (nbytes > sizeof(b))
        abort();
    h_random(b, nbytes);
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = X[b[i] >> 4];
        out[2 * i + 1] = X[b[i] & 15];
    }
    out[2 * nbytes] = '\0';
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t h_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 != 0 || n / 2 > cap)
        abort(); /* a malformed vector is a test bug */
    for (size_t i = 0; i < n / 2; i++) {
        int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            abort();
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return n / 2;
}

void h_pad(CK_UTF8CHAR *dst, size_t dstlen, const char *src)
{
    size_t n = strlen(src);
    if (n > dstlen)
        n = dstlen;
    memset(dst, ' ', dstlen);
    memcpy(dst, src, n);
}

int h_blank_padded(const CK_UTF8CHAR *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] < 0x20 || buf[i] > 0x7e)
            return 0;
    return 1;
}

/* ---- tokens and sessions ------------------------------------------------- */
CK_RV h_find_empty_slot(CK_SLOT_ID *slot)
{
    CK_SLOT_ID ids[256];
    CK_ULONG n = NELEM(ids);
    CK_RV rv = F->C_GetSlotList(CK_FALSE, ids, &n);
    if (rv != CKR_OK)
        return rv;
    int found = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        CK_TOKEN_INFO ti;
        rv = F->C_GetTokenInfo(ids[i], &ti);
        if (rv != CKR_OK)
            return rv;
        if (!(ti.flags & CKF_TOKEN_INITIALIZED)) {
            *slot = ids[i];
            found++;
        }
    }
    return found == 1 ? CKR_OK : CKR_GENERAL_ERROR;
}

void h_new_token(h_token *t, const char *prefix, int with_user_pin)
{
    char suffix[9];
    CK_UTF8CHAR label[32];
    memset(t, 0, sizeof(*t));
    h_random_hex(suffix, 4);
    snprintf(t->label, sizeof(t->label), "%.23s-%s", prefix, suffix);
    h_random_hex(t->so_pin, 16);
    h_random_hex(t->user_pin, 16);
    RV_REQ(h_find_empty_slot(&t->slot), CKR_OK, "h_new_token: one empty slot");
    h_pad(label, sizeof(label), t->label);
    RV_REQ(F->C_InitToken(t->slot, (CK_UTF8CHAR_PTR)t->so_pin, strlen(t->so_pin),
                          label),
           CKR_OK, "h_new_token: C_InitToken");
    if (!with_user_pin)
        return;
    CK_SESSION_HANDLE s = h_open(t->slot, 1);
    h_login(s, CKU_SO, t->so_pin);
    RV_REQ(F->C_InitPIN(s, (CK_UTF8CHAR_PTR)t->user_pin, strlen(t->user_pin)),
           CKR_OK, "h_new_token: C_InitPIN");
    RV_REQ(F->C_Logout(s), CKR_OK, "h_new_token: C_Logout");
    RV_REQ(F->C_CloseSession(s), CKR_OK, "h_new_token: C_CloseSession");
}

CK_SESSION_HANDLE h_open(CK_SLOT_ID slot, int rw)
{
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_FLAGS fl = CKF_SERIAL_SESSION | (rw ? CKF_RW_SESSION : 0);
    RV_REQ(F->C_OpenSession(slot, fl, NULL, NULL, &s), CKR_OK, "h_open: C_OpenSession");
    return s;
}

CK_RV h_login_rv(CK_SESSION_HANDLE s, CK_USER_TYPE u, const char *pin)
{
    return F->C_Login(s, u, (CK_UTF8CHAR_PTR)pin, strlen(pin));
}

void h_login(CK_SESSION_HANDLE s, CK_USER_TYPE u, const char *pin)
{
    RV_REQ(h_login_rv(s, u, pin), CKR_OK, "h_login: C_Login");
}

CK_SESSION_HANDLE h_user_session(void)
{
    CK_SESSION_HANDLE s = h_open(H.slot, 1);
    h_login(s, CKU_USER, H.user_pin);
    return s;
}

CK_OBJECT_HANDLE h_aes_key(CK_SESSION_HANDLE s, CK_ULONG len,
                           const CK_ATTRIBUTE *extra, CK_ULONG nextra)
{
    CK_ATTRIBUTE t[24] = {
        { CKA_VALUE_LEN, &len, sizeof(len) },
        { CKA_ENCRYPT, &h_true, sizeof(CK_BBOOL) },
        { CKA_DECRYPT, &h_true, sizeof(CK_BBOOL) },
    };
    CK_ULONG n = 3;
    CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    REQUIRE(nextra <= NELEM(t) - n, "h_aes_key: template fits");
    for (CK_ULONG i = 0; i < nextra; i++)
        t[n++] = extra[i];
    RV_REQ(F->C_GenerateKey(s, &m, t, n, &k), CKR_OK, "h_aes_key: C_GenerateKey");
    return k;
}

CK_OBJECT_HANDLE h_import_key(CK_SESSION_HANDLE s, CK_KEY_TYPE kt,
                              const uint8_t *value, size_t len,
                              const CK_ATTRIBUTE *extra, CK_ULONG nextra)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE t[24] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_VALUE, (void *)value, len },
    };
    CK_ULONG n = 3;
    CK_OBJECT_HANDLE k = CK_INVALID_HANDLE;
    REQUIRE(nextra <= NELEM(t) - n, "h_import_key: template fits");
    for (CK_ULONG i = 0; i < nextra; i++)
        t[n++] = extra[i];
    RV_REQ(F->C_CreateObject(s, t, n, &k), CKR_OK, "h_import_key: C_CreateObject");
    return k;
}

CK_OBJECT_HANDLE h_data_object(CK_SESSION_HANDLE s, const char *label)
{
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_LABEL, (void *)label, strlen(label) },
    };
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    RV_REQ(F->C_CreateObject(s, t, NELEM(t), &o), CKR_OK,
           "h_data_object: C_CreateObject");
    return o;
}

CK_RV h_get_ulong(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t,
                  CK_ULONG *v)
{
    CK_ATTRIBUTE a = { t, v, sizeof(*v) };
    return F->C_GetAttributeValue(s, o, &a, 1);
}

CK_RV h_get_bool(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t,
                 CK_BBOOL *v)
{
    CK_ATTRIBUTE a = { t, v, sizeof(*v) };
    return F->C_GetAttributeValue(s, o, &a, 1);
}

CK_ULONG h_count(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n)
{
    CK_OBJECT_HANDLE h[64];
    CK_ULONG got = 0, total = 0;
    RV_REQ(F->C_FindObjectsInit(s, t, n), CKR_OK, "h_count: C_FindObjectsInit");
    do {
        RV_EQ(F->C_FindObjects(s, h, NELEM(h), &got), CKR_OK, "h_count: C_FindObjects");
        total += got;
    } while (got == NELEM(h));
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OK, "h_count: C_FindObjectsFinal");
    return total;
}

void h_gcm(CK_GCM_PARAMS *p, CK_MECHANISM *m, uint8_t *iv, CK_ULONG ivlen,
           uint8_t *aad, CK_ULONG aadlen, CK_ULONG tagbits)
{
    p->pIv = iv;
    p->ulIvLen = ivlen;
    p->ulIvBits = ivlen * 8;
    p->pAAD = aad;
    p->ulAADLen = aadlen;
    p->ulTagBits = tagbits;
    m->mechanism = CKM_AES_GCM;
    m->pParameter = p;
    m->ulParameterLen = sizeof(*p);
}

CK_RV h_gcm_round_trip(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, uint32_t ctr)
{
    uint8_t iv[12] = { 0 }, aad[8] = "aad-data", pt[64], ct[80], back[80];
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    CK_ULONG ctlen = sizeof(ct), backlen = sizeof(back);
    CK_RV rv;

    memcpy(iv, &ctr, sizeof(ctr));
    memset(pt, (int)(ctr & 0xff), sizeof(pt));
    h_gcm(&p, &m, iv, sizeof(iv), aad, sizeof(aad), 128);
    if ((rv = F->C_EncryptInit(s, &m, k)) != CKR_OK)
        return rv;
    if ((rv = F->C_Encrypt(s, pt, sizeof(pt), ct, &ctlen)) != CKR_OK)
        return rv;
    if (ctlen != sizeof(pt) + 16)
        return CKR_GENERAL_ERROR;
    if ((rv = F->C_DecryptInit(s, &m, k)) != CKR_OK)
        return rv;
    if ((rv = F->C_Decrypt(s, ct, ctlen, back, &backlen)) != CKR_OK)
        return rv;
    if (backlen != sizeof(pt) || memcmp(back, pt, sizeof(pt)) != 0)
        return CKR_GENERAL_ERROR;
    return CKR_OK;
}
