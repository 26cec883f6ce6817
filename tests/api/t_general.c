/* General-purpose, slot/token and random functions as a client sees them:
 * C_Initialize/C_Finalize variants, C_GetInfo, the interface functions and
 * function lists, slot and token info, the empty-slot rule, mechanisms,
 * C_WaitForSlotEvent, C_GenerateRandom/C_SeedRandom, and the
 * not-initialised / bad-session / bad-slot sweeps over every 2.40 function.
 * PKCS#11 3.2 sec. 5.4-5.6, 5.17. */
#include <stdbool.h>
#include "custos.h"
#include "harness.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- C_Initialize / C_Finalize ----------------------------------------- */
static CK_RV mx_create(CK_VOID_PTR_PTR pp)
{
    pthread_mutex_t *m = malloc(sizeof(*m));
    if (m == NULL)
        return CKR_HOST_MEMORY;
    pthread_mutex_init(m, NULL);
    *pp = m;
    return CKR_OK;
}

static CK_RV mx_destroy(CK_VOID_PTR p)
{
    pthread_mutex_destroy(p);
    free(p);
    return CKR_OK;
}

static CK_RV mx_lock(CK_VOID_PTR p)
{
    return pthread_mutex_lock(p) == 0 ? CKR_OK : CKR_MUTEX_BAD;
}

static CK_RV mx_unlock(CK_VOID_PTR p)
{
    return pthread_mutex_unlock(p) == 0 ? CKR_OK : CKR_MUTEX_NOT_LOCKED;
}

static void test_initialize_twice_and_finalize(void)
{
    RV_EQ(F->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED,
          "C_Initialize while initialised");
    RV_EQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");
    RV_EQ(F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED, "C_Finalize twice");
    RV_EQ(F->C_Initialize(NULL), CKR_OK, "C_Initialize(NULL) after C_Finalize");
}

static void test_initialize_with_args(void)
{
    CK_C_INITIALIZE_ARGS a;
    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");

    memset(&a, 0, sizeof(a));
    RV_EQ(F->C_Initialize(&a), CKR_OK, "C_Initialize(all-zero args)");
    RV_EQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");

    memset(&a, 0, sizeof(a));
    a.flags = CKF_OS_LOCKING_OK;
    RV_EQ(F->C_Initialize(&a), CKR_OK, "C_Initialize(CKF_OS_LOCKING_OK)");
    RV_EQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");

    /* All four callbacks, no CKF_OS_LOCKING_OK: the library must use them
     * or say CKR_CANT_LOCK (sec. 5.4, C_Initialize case 3). */
    memset(&a, 0, sizeof(a));
    a.CreateMutex = mx_create;
    a.DestroyMutex = mx_destroy;
    a.LockMutex = mx_lock;
    a.UnlockMutex = mx_unlock;
    CK_RV rv = F->C_Initialize(&a);
    RV_IN2(rv, CKR_OK, CKR_CANT_LOCK, "C_Initialize(app mutex callbacks)");
    if (rv == CKR_OK)
        RV_EQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");

    /* The library creates no threads of its own. */
    memset(&a, 0, sizeof(a));
    a.flags = CKF_LIBRARY_CANT_CREATE_OS_THREADS | CKF_OS_LOCKING_OK;
    rv = F->C_Initialize(&a);
    RV_IN2(rv, CKR_OK, CKR_NEED_TO_CREATE_THREADS,
           "C_Initialize(CKF_LIBRARY_CANT_CREATE_OS_THREADS)");
    if (rv == CKR_OK)
        RV_EQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");

    RV_EQ(F->C_Initialize(NULL), CKR_OK, "C_Initialize(NULL) to end the test");
}

static void test_initialize_with_some_mutex_callbacks_is_arguments_bad(void)
{
    CK_C_INITIALIZE_ARGS a;
    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");
    for (unsigned mask = 1; mask < 15; mask++) {
        memset(&a, 0, sizeof(a));
        a.flags = CKF_OS_LOCKING_OK;
        if (mask & 1)
            a.CreateMutex = mx_create;
        if (mask & 2)
            a.DestroyMutex = mx_destroy;
        if (mask & 4)
            a.LockMutex = mx_lock;
        if (mask & 8)
            a.UnlockMutex = mx_unlock;
        CK_RV rv = F->C_Initialize(&a);
        RV_EQ(rv, CKR_ARGUMENTS_BAD, "C_Initialize(some but not all mutex callbacks)");
        if (rv == CKR_OK)
            (void)F->C_Finalize(NULL);
    }
    RV_EQ(F->C_GetInfo(&(CK_INFO){ 0 }), CKR_CRYPTOKI_NOT_INITIALIZED,
          "C_GetInfo after refused C_Initialize");
    RV_EQ(F->C_Initialize(NULL), CKR_OK, "C_Initialize(NULL)");
}

static void test_initialize_reserved_nonnull_is_arguments_bad(void)
{
    CK_C_INITIALIZE_ARGS a;
    int junk = 0;
    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");
    memset(&a, 0, sizeof(a));
    a.flags = CKF_OS_LOCKING_OK;
    a.pReserved = &junk;
    CK_RV rv = F->C_Initialize(&a);
    RV_EQ(rv, CKR_ARGUMENTS_BAD, "C_Initialize(pReserved non-NULL)");
    if (rv == CKR_OK)
        (void)F->C_Finalize(NULL);
    RV_EQ(F->C_Initialize(NULL), CKR_OK, "C_Initialize(NULL)");
}

static void test_finalize_nonnull_is_arguments_bad(void)
{
    int junk = 0;
    CK_INFO info;
    RV_EQ(F->C_Finalize(&junk), CKR_ARGUMENTS_BAD, "C_Finalize(non-NULL)");
    RV_EQ(F->C_GetInfo(&info), CKR_OK, "library still initialised after refused C_Finalize");
}

/* ---- C_GetInfo ---------------------------------------------------------- */
static void test_get_info(void)
{
    CK_INFO info;
    memset(&info, 0, sizeof(info));
    RV_REQ(F32->C_GetInfo(&info), CKR_OK, "C_GetInfo (3.2 list)");
    CHECK(info.cryptokiVersion.major == 3 && info.cryptokiVersion.minor == 2,
          "C_GetInfo through the 3.2 list: cryptokiVersion 3.2");
    CHECK(h_blank_padded(info.manufacturerID, sizeof(info.manufacturerID)),
          "CK_INFO.manufacturerID blank padded, no NUL");
    CHECK(h_blank_padded(info.libraryDescription, sizeof(info.libraryDescription)),
          "CK_INFO.libraryDescription blank padded, no NUL");
    CHECK(info.flags == 0, "CK_INFO.flags is zero (reserved)");
    CHECK(info.manufacturerID[0] != ' ', "manufacturerID not empty");

    memset(&info, 0, sizeof(info));
    RV_EQ(F->C_GetInfo(&info), CKR_OK, "C_GetInfo (2.40 list)");
    CHECK((info.cryptokiVersion.major == 2 && info.cryptokiVersion.minor == 40) ||
              (info.cryptokiVersion.major == 3 && info.cryptokiVersion.minor == 2),
          "C_GetInfo through the 2.40 list: cryptokiVersion 2.40 or 3.2");
    RV_EQ(F->C_GetInfo(NULL), CKR_ARGUMENTS_BAD, "C_GetInfo(NULL)");
}

/* ---- interfaces and function lists -------------------------------------- */
static int all_entries_set(const void *list, size_t size, size_t *count)
{
    /* Every function-list struct is a CK_VERSION followed by pointers. */
    size_t off = offsetof(CK_FUNCTION_LIST, C_Initialize);
    size_t n = (size - off) / sizeof(CK_C_Initialize);
    const unsigned char *p = (const unsigned char *)list + off;
    *count = n;
    for (size_t i = 0; i < n; i++) {
        void *fp;
        memcpy(&fp, p + i * sizeof(CK_C_Initialize), sizeof(fp));
        if (fp == NULL)
            return 0;
    }
    return 1;
}

static void test_function_lists_are_complete(void)
{
    CK_FUNCTION_LIST_PTR l = NULL;
    size_t n = 0;
    RV_EQ(h_get_function_list(&l), CKR_OK, "C_GetFunctionList");
    REQUIRE(l != NULL, "C_GetFunctionList gives a list");
    CHECK(l->version.major == 2 && l->version.minor == 40,
          "C_GetFunctionList list has version 2.40");
    CHECK(all_entries_set(l, sizeof(*l), &n), "2.40 list has no NULL entry");
    CHECK(n == 68, "2.40 list has 68 functions");
    RV_EQ(h_get_function_list(NULL), CKR_ARGUMENTS_BAD, "C_GetFunctionList(NULL)");

    CHECK(F30->version.major == 3 && F30->version.minor == 0, "3.0 list has version 3.0");
    CHECK(all_entries_set(F30, sizeof(*F30), &n), "3.0 list has no NULL entry");
    CHECK(n == 92, "3.0 list has 92 functions");
    CHECK(F32->version.major == 3 && F32->version.minor == 2, "3.2 list has version 3.2");
    CHECK(all_entries_set(F32, sizeof(*F32), &n), "3.2 list has no NULL entry");
    CHECK(n == 104, "3.2 list has 104 functions");
}

static void test_interface_list_two_call_rule(void)
{
    CK_ULONG n = 0;
    CK_INTERFACE list[16];
    int have32 = 0, have30 = 0, have240 = 0, have_custos = 0;

    RV_EQ(h_get_interface_list(NULL, &n), CKR_OK, "C_GetInterfaceList size query");
    CHECK(n >= 3 && n <= NELEM(list), "at least 3 interfaces (3.2, 3.0, 2.40)");
    if (n < 1 || n > NELEM(list))
        return;
    CK_ULONG small = n - 1;
    RV_EQ(h_get_interface_list(list, &small), CKR_BUFFER_TOO_SMALL,
          "C_GetInterfaceList with room for n-1");
    CHECK(small == n, "C_GetInterfaceList CKR_BUFFER_TOO_SMALL gives the count");
    CK_ULONG got = n;
    RV_EQ(h_get_interface_list(list, &got), CKR_OK, "C_GetInterfaceList");
    CHECK(got == n, "C_GetInterfaceList count stable");
    for (CK_ULONG i = 0; i < got && i < NELEM(list); i++) {
        bool vendor = list[i].pInterfaceName != NULL &&
                      strcmp((const char *)list[i].pInterfaceName, CUSTOS_INTERFACE_NAME) == 0;
        CHECK(list[i].pInterfaceName != NULL &&
                  (vendor || strcmp((const char *)list[i].pInterfaceName, "PKCS 11") == 0),
              "interface name is \"PKCS 11\" or \"" CUSTOS_INTERFACE_NAME "\"");
        CHECK(list[i].pFunctionList != NULL, "interface has a function list");
        if (list[i].pFunctionList == NULL)
            continue;
        const CK_VERSION *v = list[i].pFunctionList; /* first member */
        if (vendor) {
            have_custos |= v->major == 1 && v->minor == 0;
            continue;
        }
        have32 |= v->major == 3 && v->minor == 2;
        have30 |= v->major == 3 && v->minor == 0;
        have240 |= v->major == 2 && v->minor == 40;
    }
    CHECK(have32, "interface 3.2 listed");
    CHECK(have_custos, "interface \"" CUSTOS_INTERFACE_NAME "\" 1.0 listed");
    CHECK(have30, "interface 3.0 listed");
    CHECK(have240, "interface 2.40 listed");
    RV_EQ(h_get_interface_list(list, NULL), CKR_ARGUMENTS_BAD,
          "C_GetInterfaceList(pulCount NULL)");
}

static void test_get_interface_versions_and_errors(void)
{
    static const CK_VERSION vs[] = { { 3, 2 }, { 3, 0 }, { 2, 40 } };
    CK_INTERFACE_PTR itf = NULL;
    for (size_t i = 0; i < NELEM(vs); i++) {
        CK_VERSION v = vs[i];
        itf = NULL;
        RV_EQ(h_get_interface((CK_UTF8CHAR_PTR) "PKCS 11", &v, &itf, 0), CKR_OK,
              "C_GetInterface(\"PKCS 11\", version)");
        CHECK(itf != NULL && itf->pFunctionList != NULL, "C_GetInterface gives a list");
        if (itf != NULL && itf->pFunctionList != NULL) {
            const CK_VERSION *lv = itf->pFunctionList;
            CHECK(lv->major == vs[i].major && lv->minor == vs[i].minor,
                  "C_GetInterface list has the version asked for");
        }
    }
    itf = NULL;
    RV_EQ(h_get_interface(NULL, NULL, &itf, 0), CKR_OK, "C_GetInterface(default)");
    CHECK(itf != NULL && itf->pFunctionList != NULL, "default interface has a list");
    itf = NULL;
    RV_EQ(h_get_interface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, &itf, 0), CKR_OK,
          "C_GetInterface(\"PKCS 11\", any version)");
    RV_EQ(h_get_interface((CK_UTF8CHAR_PTR) "PKCS 12", NULL, &itf, 0),
          CKR_ARGUMENTS_BAD, "C_GetInterface(unknown name)");
    RV_EQ(h_get_interface((CK_UTF8CHAR_PTR) "PKCS 11", NULL, NULL, 0),
          CKR_ARGUMENTS_BAD, "C_GetInterface(ppInterface NULL)");
}

/* ---- slots and tokens --------------------------------------------------- */
static void test_slot_list_two_call_rule(void)
{
    CK_ULONG n = 0;
    CK_SLOT_ID ids[256];
    RV_EQ(F->C_GetSlotList(CK_FALSE, NULL, &n), CKR_OK, "C_GetSlotList size query");
    CHECK(n >= 2, "at least the shared token and one empty slot");
    if (n < 1 || n > NELEM(ids))
        return;
    CK_ULONG small = n - 1;
    RV_EQ(F->C_GetSlotList(CK_FALSE, ids, &small), CKR_BUFFER_TOO_SMALL,
          "C_GetSlotList with room for n-1");
    CHECK(small == n, "C_GetSlotList CKR_BUFFER_TOO_SMALL gives the count");
    CK_ULONG got = n;
    RV_EQ(F->C_GetSlotList(CK_FALSE, ids, &got), CKR_OK, "C_GetSlotList");
    CHECK(got == n, "C_GetSlotList count stable");
    CK_ULONG present = 0;
    RV_EQ(F->C_GetSlotList(CK_TRUE, NULL, &present), CKR_OK,
          "C_GetSlotList(tokenPresent) size query");
    CHECK(present == n, "every slot has a token present");
    int has_main = 0;
    for (CK_ULONG i = 0; i < got; i++)
        has_main |= ids[i] == H.slot;
    CHECK(has_main, "the shared token's slot is listed");
    RV_EQ(F->C_GetSlotList(CK_FALSE, ids, NULL), CKR_ARGUMENTS_BAD,
          "C_GetSlotList(pulCount NULL)");
}

static void test_slot_and_token_info(void)
{
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    CK_UTF8CHAR label[32];

    RV_REQ(F->C_GetSlotInfo(H.slot, &si), CKR_OK, "C_GetSlotInfo");
    CHECK(h_blank_padded(si.slotDescription, sizeof(si.slotDescription)),
          "slotDescription blank padded");
    CHECK(h_blank_padded(si.manufacturerID, sizeof(si.manufacturerID)),
          "slot manufacturerID blank padded");
    CHECK(si.flags & CKF_TOKEN_PRESENT, "CKF_TOKEN_PRESENT");

    RV_REQ(F->C_GetTokenInfo(H.slot, &ti), CKR_OK, "C_GetTokenInfo");
    CHECK(h_blank_padded(ti.label, sizeof(ti.label)), "token label blank padded");
    CHECK(h_blank_padded(ti.manufacturerID, sizeof(ti.manufacturerID)),
          "token manufacturerID blank padded");
    CHECK(h_blank_padded(ti.model, sizeof(ti.model)), "token model blank padded");
    CHECK(h_blank_padded(ti.serialNumber, sizeof(ti.serialNumber)),
          "token serialNumber blank padded");
    int hex = 1;
    for (size_t i = 0; i < 16; i++)
        hex &= (ti.serialNumber[i] >= '0' && ti.serialNumber[i] <= '9') ||
               (ti.serialNumber[i] >= 'a' && ti.serialNumber[i] <= 'f') ||
               (ti.serialNumber[i] >= 'A' && ti.serialNumber[i] <= 'F');
    CHECK(hex, "serialNumber is 16 hex digits");
    h_pad(label, sizeof(label), H.label);
    CHECK(memcmp(ti.label, label, sizeof(label)) == 0, "token label is the one given");
    CHECK(ti.flags & CKF_TOKEN_INITIALIZED, "CKF_TOKEN_INITIALIZED");
    CHECK(ti.flags & CKF_USER_PIN_INITIALIZED, "CKF_USER_PIN_INITIALIZED");
    CHECK(ti.flags & CKF_RNG, "CKF_RNG");
    CHECK(ti.flags & CKF_LOGIN_REQUIRED, "CKF_LOGIN_REQUIRED");
    CHECK(!(ti.flags & (CKF_USER_PIN_LOCKED | CKF_SO_PIN_LOCKED)), "no PIN locked");
    CHECK(ti.ulMinPinLen == 4, "ulMinPinLen 4");
    CHECK(ti.ulMaxPinLen == 255, "ulMaxPinLen 255");

    RV_EQ(F->C_GetSlotInfo(H_BAD_SLOT, &si), CKR_SLOT_ID_INVALID, "C_GetSlotInfo(bad slot)");
    RV_EQ(F->C_GetTokenInfo(H_BAD_SLOT, &ti), CKR_SLOT_ID_INVALID,
          "C_GetTokenInfo(bad slot)");
    RV_EQ(F->C_GetSlotInfo(H.slot, NULL), CKR_ARGUMENTS_BAD, "C_GetSlotInfo(NULL)");
    RV_EQ(F->C_GetTokenInfo(H.slot, NULL), CKR_ARGUMENTS_BAD, "C_GetTokenInfo(NULL)");

    CK_SLOT_ID empty;
    RV_REQ(h_find_empty_slot(&empty), CKR_OK, "exactly one uninitialised token");
    RV_EQ(F->C_GetTokenInfo(empty, &ti), CKR_OK, "C_GetTokenInfo(empty slot)");
    CHECK(!(ti.flags & CKF_TOKEN_INITIALIZED), "empty slot: CKF_TOKEN_INITIALIZED clear");
    RV_EQ(F->C_GetSlotInfo(empty, &si), CKR_OK, "C_GetSlotInfo(empty slot)");
    CHECK(si.flags & CKF_TOKEN_PRESENT, "empty slot: CKF_TOKEN_PRESENT");
}

static int serials(CK_SLOT_ID *ids, char (*ser)[16], CK_ULONG *n)
{
    if (F->C_GetSlotList(CK_FALSE, ids, n) != CKR_OK)
        return 0;
    for (CK_ULONG i = 0; i < *n; i++) {
        CK_TOKEN_INFO ti;
        if (F->C_GetTokenInfo(ids[i], &ti) != CKR_OK)
            return 0;
        memcpy(ser[i], ti.serialNumber, 16);
    }
    return 1;
}

static void test_init_token_keeps_slot_and_adds_empty_slot(void)
{
    CK_SLOT_ID ids[256], ids2[256], empty, empty2;
    char ser[256][16], ser2[256][16];
    CK_ULONG n = NELEM(ids), n2 = NELEM(ids2);
    char pin[33], name[33];
    CK_UTF8CHAR label[32];
    CK_TOKEN_INFO ti;

    REQUIRE(serials(ids, ser, &n), "slot list and serials");
    RV_REQ(h_find_empty_slot(&empty), CKR_OK, "the empty slot");
    h_random_hex(pin, 16);
    h_random_hex(name, 8);
    h_pad(label, sizeof(label), name);
    RV_REQ(F->C_InitToken(empty, (CK_UTF8CHAR_PTR)pin, strlen(pin), label), CKR_OK,
           "C_InitToken on the empty slot");
    RV_EQ(F->C_GetTokenInfo(empty, &ti), CKR_OK, "C_GetTokenInfo on the same slot id");
    CHECK(ti.flags & CKF_TOKEN_INITIALIZED, "token initialised in the same slot");
    CHECK(!(ti.flags & CKF_USER_PIN_INITIALIZED), "new token has no user PIN");
    CHECK(memcmp(ti.label, label, 32) == 0, "new token has the label given");

    CK_ULONG n1 = 0;
    RV_EQ(F->C_GetSlotList(CK_FALSE, NULL, &n1), CKR_OK, "C_GetSlotList");
    CHECK(n1 == n + 1, "one more slot after C_InitToken");
    RV_REQ(h_find_empty_slot(&empty2), CKR_OK, "a new empty slot");
    CHECK(empty2 != empty, "the new empty slot has another id");

    n = NELEM(ids);
    REQUIRE(serials(ids, ser, &n), "serials before C_Finalize");
    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");
    RV_REQ(F->C_Initialize(NULL), CKR_OK, "C_Initialize");
    REQUIRE(serials(ids2, ser2, &n2), "serials after C_Initialize");
    CHECK(n2 == n, "same number of slots after C_Finalize/C_Initialize");
    for (CK_ULONG i = 0; i < n && i < n2; i++) {
        int found = 0;
        for (CK_ULONG j = 0; j < n2; j++)
            if (ids2[j] == ids[i]) {
                found = 1;
                if (memcmp(ser[i], ser2[j], 16) != 0 && ids[i] != empty2)
                    CHECK(0, "serial number of an initialised token stable across "
                             "C_Finalize/C_Initialize");
            }
        CHECK(found, "slot id stable across C_Finalize/C_Initialize");
    }
    RV_EQ(F->C_GetTokenInfo(empty, &ti), CKR_OK, "C_GetTokenInfo after re-initialise");
    CHECK(memcmp(ti.label, label, 32) == 0, "token label persists");
}

/* ---- mechanisms --------------------------------------------------------- */
static const struct {
    CK_MECHANISM_TYPE m;
    CK_FLAGS need;
} REQUIRED_MECHS[] = {
    { CKM_AES_KEY_GEN, CKF_GENERATE },
    { CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE },
    { CKM_AES_GCM, CKF_ENCRYPT | CKF_DECRYPT },
    { CKM_AES_KEY_WRAP, CKF_WRAP | CKF_UNWRAP },
    { CKM_AES_KEY_WRAP_KWP, CKF_WRAP | CKF_UNWRAP },
    { CKM_AES_KEY_WRAP_PAD, CKF_WRAP | CKF_UNWRAP },
    { CKM_SHA224, CKF_DIGEST }, { CKM_SHA256, CKF_DIGEST },
    { CKM_SHA384, CKF_DIGEST }, { CKM_SHA512, CKF_DIGEST },
    { CKM_SHA3_224, CKF_DIGEST }, { CKM_SHA3_256, CKF_DIGEST },
    { CKM_SHA3_384, CKF_DIGEST }, { CKM_SHA3_512, CKF_DIGEST },
    { CKM_SHA256_HMAC, CKF_SIGN | CKF_VERIFY },
    { CKM_SHA384_HMAC, CKF_SIGN | CKF_VERIFY },
    { CKM_SHA512_HMAC, CKF_SIGN | CKF_VERIFY },
};

static const CK_MECHANISM_TYPE LEGACY[] = { CKM_AES_ECB, CKM_AES_CBC, CKM_AES_CBC_PAD,
                                            CKM_AES_CTR };

static void test_mechanism_list_and_info(void)
{
    CK_MECHANISM_TYPE list[256];
    CK_MECHANISM_INFO mi;
    CK_ULONG n = 0;

    RV_REQ(F->C_GetMechanismList(H.slot, NULL, &n), CKR_OK, "C_GetMechanismList size query");
    CHECK(n >= NELEM(REQUIRED_MECHS) && n <= NELEM(list), "mechanism count plausible");
    if (n < 1 || n > NELEM(list))
        return;
    CK_ULONG small = n - 1;
    RV_EQ(F->C_GetMechanismList(H.slot, list, &small), CKR_BUFFER_TOO_SMALL,
          "C_GetMechanismList with room for n-1");
    CHECK(small == n, "C_GetMechanismList CKR_BUFFER_TOO_SMALL gives the count");
    CK_ULONG got = n;
    RV_REQ(F->C_GetMechanismList(H.slot, list, &got), CKR_OK, "C_GetMechanismList");
    CHECK(got == n, "mechanism count stable");
    for (CK_ULONG i = 0; i < got; i++) {
        RV_EQ(F->C_GetMechanismInfo(H.slot, list[i], &mi), CKR_OK,
              "every listed mechanism has C_GetMechanismInfo");
        CHECK(mi.flags != 0, "listed mechanism has flags");
        for (size_t j = 0; j < NELEM(LEGACY); j++)
            CHECK(list[i] != LEGACY[j], "legacy AES mode absent by default");
    }
    for (size_t j = 0; j < NELEM(REQUIRED_MECHS); j++) {
        int found = 0;
        for (CK_ULONG i = 0; i < got; i++)
            found |= list[i] == REQUIRED_MECHS[j].m;
        CHECK(found, "required mechanism listed");
        memset(&mi, 0, sizeof(mi));
        RV_EQ(F->C_GetMechanismInfo(H.slot, REQUIRED_MECHS[j].m, &mi), CKR_OK,
              "C_GetMechanismInfo(required mechanism)");
        CHECK((mi.flags & REQUIRED_MECHS[j].need) == REQUIRED_MECHS[j].need,
              "required mechanism has its usage flags");
    }
    RV_EQ(F->C_GetMechanismInfo(H.slot, CKM_AES_GCM, &mi), CKR_OK, "info AES-GCM");
    CHECK(mi.ulMinKeySize == 16 && mi.ulMaxKeySize == 32,
          "AES-GCM key sizes 16..32 bytes");
    for (size_t j = 0; j < NELEM(LEGACY); j++)
        RV_EQ(F->C_GetMechanismInfo(H.slot, LEGACY[j], &mi), CKR_MECHANISM_INVALID,
              "C_GetMechanismInfo(legacy mode) refused by default");
    RV_EQ(F->C_GetMechanismInfo(H.slot, 0x7ffffff0UL, &mi), CKR_MECHANISM_INVALID,
          "C_GetMechanismInfo(unknown mechanism)");
    RV_EQ(F->C_GetMechanismInfo(H_BAD_SLOT, CKM_AES_GCM, &mi), CKR_SLOT_ID_INVALID,
          "C_GetMechanismInfo(bad slot)");
    RV_EQ(F->C_GetMechanismInfo(H.slot, CKM_AES_GCM, NULL), CKR_ARGUMENTS_BAD,
          "C_GetMechanismInfo(pInfo NULL)");
    RV_EQ(F->C_GetMechanismList(H_BAD_SLOT, NULL, &n), CKR_SLOT_ID_INVALID,
          "C_GetMechanismList(bad slot)");
    RV_EQ(F->C_GetMechanismList(H.slot, list, NULL), CKR_ARGUMENTS_BAD,
          "C_GetMechanismList(pulCount NULL)");
}

/* ---- events and random ---------------------------------------------------- */
static void test_wait_for_slot_event_dont_block(void)
{
    CK_SLOT_ID slot = 0;
    RV_IN2(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), CKR_NO_EVENT,
           CKR_FUNCTION_NOT_SUPPORTED, "C_WaitForSlotEvent(CKF_DONT_BLOCK)");
}

static void test_generate_random(void)
{
    CK_SESSION_HANDLE s = h_open(H.slot, 0);
    static uint8_t big[4096];
    uint8_t a[32], b[32], zero[32] = { 0 }, one = 0;

    RV_EQ(F->C_GenerateRandom(s, a, 0), CKR_OK, "C_GenerateRandom(0 bytes)");
    RV_EQ(F->C_GenerateRandom(s, &one, 1), CKR_OK, "C_GenerateRandom(1 byte)");
    memset(big, 0, sizeof(big));
    RV_EQ(F->C_GenerateRandom(s, big, sizeof(big)), CKR_OK, "C_GenerateRandom(4096)");
    size_t zeros = 0;
    for (size_t i = 0; i < sizeof(big); i++)
        zeros += big[i] == 0;
    CHECK(zeros < 64, "4096 random bytes are not mostly zero");
    RV_EQ(F->C_GenerateRandom(s, a, sizeof(a)), CKR_OK, "C_GenerateRandom(32)");
    RV_EQ(F->C_GenerateRandom(s, b, sizeof(b)), CKR_OK, "C_GenerateRandom(32) again");
    CHECK(memcmp(a, b, sizeof(a)) != 0, "two random outputs differ");
    CHECK(memcmp(a, zero, sizeof(a)) != 0, "random output not all zero");
    RV_EQ(F->C_GenerateRandom(s, NULL, 16), CKR_ARGUMENTS_BAD,
          "C_GenerateRandom(NULL, 16)");
    RV_EQ(F->C_GenerateRandom(H_BAD_SESSION, a, sizeof(a)), CKR_SESSION_HANDLE_INVALID,
          "C_GenerateRandom(bad session)");
}

static void test_seed_random(void)
{
    CK_SESSION_HANDLE s = h_open(H.slot, 0);
    uint8_t seed[32];
    h_random(seed, sizeof(seed));
    CK_RV rv = F->C_SeedRandom(s, seed, sizeof(seed));
    RV_IN2(rv, CKR_OK, CKR_RANDOM_SEED_NOT_SUPPORTED, "C_SeedRandom");
    if (rv == CKR_OK)
        RV_EQ(F->C_SeedRandom(s, NULL, 16), CKR_ARGUMENTS_BAD, "C_SeedRandom(NULL, 16)");
    RV_EQ(F->C_SeedRandom(H_BAD_SESSION, seed, sizeof(seed)), CKR_SESSION_HANDLE_INVALID,
          "C_SeedRandom(bad session)");
}

/* ---- sweeps over every function ----------------------------------------- */
/* Functions Custos may keep as stubs (module-behaviour.md): a stub may
 * answer CKR_FUNCTION_NOT_SUPPORTED before anything else (sec. 5.1). */
#define NI(call, name) \
    RV_EQ((call), CKR_CRYPTOKI_NOT_INITIALIZED, name " before C_Initialize")
#define NI_STUB(call, name) \
    RV_IN2((call), CKR_CRYPTOKI_NOT_INITIALIZED, CKR_FUNCTION_NOT_SUPPORTED, \
           name " (stub) before C_Initialize")
/* Legacy functions answer CKR_FUNCTION_NOT_PARALLEL (sec. 5.20). */
#define NI_PAR(call, name) \
    RV_IN2((call), CKR_CRYPTOKI_NOT_INITIALIZED, CKR_FUNCTION_NOT_PARALLEL, \
           name " (legacy) before C_Initialize")

static void test_every_function_before_initialize(void)
{
    uint8_t buf[64] = { 0 }, out[64];
    CK_ULONG len = sizeof(out), cnt = 4;
    CK_SLOT_ID slot = H.slot, slots[8];
    CK_SESSION_HANDLE s = 1;
    CK_OBJECT_HANDLE o = 1, o2;
    CK_MECHANISM mech = { CKM_SHA256, NULL, 0 };
    CK_ATTRIBUTE attr = { CKA_LABEL, buf, 8 };
    CK_INFO info;
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    CK_SESSION_INFO ses;
    CK_MECHANISM_INFO mi;
    CK_MECHANISM_TYPE mt[8];
    CK_UTF8CHAR label[32];
    h_pad(label, sizeof(label), "x");

    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");
    NI(F->C_Finalize(NULL), "C_Finalize");
    NI(F->C_GetInfo(&info), "C_GetInfo");
    NI(F->C_GetSlotList(CK_FALSE, slots, &cnt), "C_GetSlotList");
    NI(F->C_GetSlotInfo(slot, &si), "C_GetSlotInfo");
    NI(F->C_GetTokenInfo(slot, &ti), "C_GetTokenInfo");
    cnt = NELEM(mt);
    NI(F->C_GetMechanismList(slot, mt, &cnt), "C_GetMechanismList");
    NI(F->C_GetMechanismInfo(slot, CKM_SHA256, &mi), "C_GetMechanismInfo");
    NI(F->C_InitToken(slot, buf, 8, label), "C_InitToken");
    NI(F->C_InitPIN(s, buf, 8), "C_InitPIN");
    NI(F->C_SetPIN(s, buf, 8, buf, 8), "C_SetPIN");
    NI(F->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &s), "C_OpenSession");
    NI(F->C_CloseSession(s), "C_CloseSession");
    NI(F->C_CloseAllSessions(slot), "C_CloseAllSessions");
    NI(F->C_GetSessionInfo(s, &ses), "C_GetSessionInfo");
    len = sizeof(out);
    NI_STUB(F->C_GetOperationState(s, out, &len), "C_GetOperationState");
    NI_STUB(F->C_SetOperationState(s, buf, 8, 0, 0), "C_SetOperationState");
    NI(F->C_Login(s, CKU_USER, buf, 8), "C_Login");
    NI(F->C_Logout(s), "C_Logout");
    NI(F->C_CreateObject(s, &attr, 1, &o2), "C_CreateObject");
    NI(F->C_CopyObject(s, o, &attr, 1, &o2), "C_CopyObject");
    NI(F->C_DestroyObject(s, o), "C_DestroyObject");
    NI(F->C_GetObjectSize(s, o, &len), "C_GetObjectSize");
    NI(F->C_GetAttributeValue(s, o, &attr, 1), "C_GetAttributeValue");
    NI(F->C_SetAttributeValue(s, o, &attr, 1), "C_SetAttributeValue");
    NI(F->C_FindObjectsInit(s, &attr, 1), "C_FindObjectsInit");
    NI(F->C_FindObjects(s, &o2, 1, &cnt), "C_FindObjects");
    NI(F->C_FindObjectsFinal(s), "C_FindObjectsFinal");
    len = sizeof(out);
    NI(F->C_EncryptInit(s, &mech, o), "C_EncryptInit");
    NI(F->C_Encrypt(s, buf, 16, out, &len), "C_Encrypt");
    NI(F->C_EncryptUpdate(s, buf, 16, out, &len), "C_EncryptUpdate");
    NI(F->C_EncryptFinal(s, out, &len), "C_EncryptFinal");
    NI(F->C_DecryptInit(s, &mech, o), "C_DecryptInit");
    NI(F->C_Decrypt(s, buf, 16, out, &len), "C_Decrypt");
    NI(F->C_DecryptUpdate(s, buf, 16, out, &len), "C_DecryptUpdate");
    NI(F->C_DecryptFinal(s, out, &len), "C_DecryptFinal");
    NI(F->C_DigestInit(s, &mech), "C_DigestInit");
    NI(F->C_Digest(s, buf, 16, out, &len), "C_Digest");
    NI(F->C_DigestUpdate(s, buf, 16), "C_DigestUpdate");
    NI(F->C_DigestKey(s, o), "C_DigestKey");
    NI(F->C_DigestFinal(s, out, &len), "C_DigestFinal");
    NI(F->C_SignInit(s, &mech, o), "C_SignInit");
    NI(F->C_Sign(s, buf, 16, out, &len), "C_Sign");
    NI(F->C_SignUpdate(s, buf, 16), "C_SignUpdate");
    NI(F->C_SignFinal(s, out, &len), "C_SignFinal");
    NI_STUB(F->C_SignRecoverInit(s, &mech, o), "C_SignRecoverInit");
    NI_STUB(F->C_SignRecover(s, buf, 16, out, &len), "C_SignRecover");
    NI(F->C_VerifyInit(s, &mech, o), "C_VerifyInit");
    NI(F->C_Verify(s, buf, 16, buf, 32), "C_Verify");
    NI(F->C_VerifyUpdate(s, buf, 16), "C_VerifyUpdate");
    NI(F->C_VerifyFinal(s, buf, 32), "C_VerifyFinal");
    NI_STUB(F->C_VerifyRecoverInit(s, &mech, o), "C_VerifyRecoverInit");
    NI_STUB(F->C_VerifyRecover(s, buf, 32, out, &len), "C_VerifyRecover");
    NI_STUB(F->C_DigestEncryptUpdate(s, buf, 16, out, &len), "C_DigestEncryptUpdate");
    NI_STUB(F->C_DecryptDigestUpdate(s, buf, 16, out, &len), "C_DecryptDigestUpdate");
    NI_STUB(F->C_SignEncryptUpdate(s, buf, 16, out, &len), "C_SignEncryptUpdate");
    NI_STUB(F->C_DecryptVerifyUpdate(s, buf, 16, out, &len), "C_DecryptVerifyUpdate");
    NI(F->C_GenerateKey(s, &mech, &attr, 1, &o2), "C_GenerateKey");
    NI_STUB(F->C_GenerateKeyPair(s, &mech, &attr, 1, &attr, 1, &o2, &o2),
            "C_GenerateKeyPair");
    NI(F->C_WrapKey(s, &mech, o, o, out, &len), "C_WrapKey");
    NI(F->C_UnwrapKey(s, &mech, o, buf, 24, &attr, 1, &o2), "C_UnwrapKey");
    NI_STUB(F->C_DeriveKey(s, &mech, o, &attr, 1, &o2), "C_DeriveKey");
    NI(F->C_SeedRandom(s, buf, 16), "C_SeedRandom");
    NI(F->C_GenerateRandom(s, out, 16), "C_GenerateRandom");
    NI_PAR(F->C_GetFunctionStatus(s), "C_GetFunctionStatus");
    NI_PAR(F->C_CancelFunction(s), "C_CancelFunction");
    NI_STUB(F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL), "C_WaitForSlotEvent");
    /* 3.0 additions */
    NI(F30->C_LoginUser(s, CKU_USER, buf, 8, (CK_UTF8CHAR_PTR) "u", 1), "C_LoginUser");
    NI(F30->C_SessionCancel(s, CKF_ENCRYPT), "C_SessionCancel");
    NI_STUB(F30->C_MessageEncryptInit(s, &mech, o), "C_MessageEncryptInit");
    /* Still usable before C_Initialize (sec. 5.4): */
    CK_FUNCTION_LIST_PTR l = NULL;
    RV_EQ(h_get_function_list(&l), CKR_OK, "C_GetFunctionList before C_Initialize");
    cnt = 0;
    RV_EQ(h_get_interface_list(NULL, &cnt), CKR_OK,
          "C_GetInterfaceList before C_Initialize");
    RV_EQ(F->C_Initialize(NULL), CKR_OK, "C_Initialize");
}

#define BS(call, name) \
    RV_EQ((call), CKR_SESSION_HANDLE_INVALID, name "(bad session)")
#define BS_STUB(call, name) \
    RV_IN2((call), CKR_SESSION_HANDLE_INVALID, CKR_FUNCTION_NOT_SUPPORTED, \
           name "(bad session; stub)")
#define BS_PAR(call, name) \
    RV_IN2((call), CKR_SESSION_HANDLE_INVALID, CKR_FUNCTION_NOT_PARALLEL, \
           name "(bad session; legacy)")

static void sweep_bad_session(CK_SESSION_HANDLE s)
{
    uint8_t buf[64] = { 0 }, out[64];
    CK_ULONG len = sizeof(out), cnt = 0;
    CK_OBJECT_HANDLE o = 1, o2;
    CK_MECHANISM mech = { CKM_SHA256, NULL, 0 };
    CK_ATTRIBUTE attr = { CKA_LABEL, buf, 8 };
    CK_SESSION_INFO ses;

    BS(F->C_InitPIN(s, buf, 8), "C_InitPIN");
    BS(F->C_SetPIN(s, buf, 8, buf, 8), "C_SetPIN");
    BS(F->C_CloseSession(s), "C_CloseSession");
    BS(F->C_GetSessionInfo(s, &ses), "C_GetSessionInfo");
    BS_STUB(F->C_GetOperationState(s, out, &len), "C_GetOperationState");
    BS_STUB(F->C_SetOperationState(s, buf, 8, 0, 0), "C_SetOperationState");
    BS(F->C_Login(s, CKU_USER, buf, 8), "C_Login");
    BS(F->C_Logout(s), "C_Logout");
    BS(F->C_CreateObject(s, &attr, 1, &o2), "C_CreateObject");
    BS(F->C_CopyObject(s, o, &attr, 1, &o2), "C_CopyObject");
    BS(F->C_DestroyObject(s, o), "C_DestroyObject");
    BS(F->C_GetObjectSize(s, o, &len), "C_GetObjectSize");
    BS(F->C_GetAttributeValue(s, o, &attr, 1), "C_GetAttributeValue");
    BS(F->C_SetAttributeValue(s, o, &attr, 1), "C_SetAttributeValue");
    BS(F->C_FindObjectsInit(s, &attr, 1), "C_FindObjectsInit");
    BS(F->C_FindObjects(s, &o2, 1, &cnt), "C_FindObjects");
    BS(F->C_FindObjectsFinal(s), "C_FindObjectsFinal");
    len = sizeof(out);
    BS(F->C_EncryptInit(s, &mech, o), "C_EncryptInit");
    BS(F->C_Encrypt(s, buf, 16, out, &len), "C_Encrypt");
    BS(F->C_EncryptUpdate(s, buf, 16, out, &len), "C_EncryptUpdate");
    BS(F->C_EncryptFinal(s, out, &len), "C_EncryptFinal");
    BS(F->C_DecryptInit(s, &mech, o), "C_DecryptInit");
    BS(F->C_Decrypt(s, buf, 16, out, &len), "C_Decrypt");
    BS(F->C_DecryptUpdate(s, buf, 16, out, &len), "C_DecryptUpdate");
    BS(F->C_DecryptFinal(s, out, &len), "C_DecryptFinal");
    BS(F->C_DigestInit(s, &mech), "C_DigestInit");
    BS(F->C_Digest(s, buf, 16, out, &len), "C_Digest");
    BS(F->C_DigestUpdate(s, buf, 16), "C_DigestUpdate");
    BS(F->C_DigestKey(s, o), "C_DigestKey");
    BS(F->C_DigestFinal(s, out, &len), "C_DigestFinal");
    BS(F->C_SignInit(s, &mech, o), "C_SignInit");
    BS(F->C_Sign(s, buf, 16, out, &len), "C_Sign");
    BS(F->C_SignUpdate(s, buf, 16), "C_SignUpdate");
    BS(F->C_SignFinal(s, out, &len), "C_SignFinal");
    BS_STUB(F->C_SignRecoverInit(s, &mech, o), "C_SignRecoverInit");
    BS_STUB(F->C_SignRecover(s, buf, 16, out, &len), "C_SignRecover");
    BS(F->C_VerifyInit(s, &mech, o), "C_VerifyInit");
    BS(F->C_Verify(s, buf, 16, buf, 32), "C_Verify");
    BS(F->C_VerifyUpdate(s, buf, 16), "C_VerifyUpdate");
    BS(F->C_VerifyFinal(s, buf, 32), "C_VerifyFinal");
    BS_STUB(F->C_VerifyRecoverInit(s, &mech, o), "C_VerifyRecoverInit");
    BS_STUB(F->C_VerifyRecover(s, buf, 32, out, &len), "C_VerifyRecover");
    BS_STUB(F->C_DigestEncryptUpdate(s, buf, 16, out, &len), "C_DigestEncryptUpdate");
    BS_STUB(F->C_DecryptDigestUpdate(s, buf, 16, out, &len), "C_DecryptDigestUpdate");
    BS_STUB(F->C_SignEncryptUpdate(s, buf, 16, out, &len), "C_SignEncryptUpdate");
    BS_STUB(F->C_DecryptVerifyUpdate(s, buf, 16, out, &len), "C_DecryptVerifyUpdate");
    BS(F->C_GenerateKey(s, &mech, &attr, 1, &o2), "C_GenerateKey");
    BS_STUB(F->C_GenerateKeyPair(s, &mech, &attr, 1, &attr, 1, &o2, &o2),
            "C_GenerateKeyPair");
    BS(F->C_WrapKey(s, &mech, o, o, out, &len), "C_WrapKey");
    BS(F->C_UnwrapKey(s, &mech, o, buf, 24, &attr, 1, &o2), "C_UnwrapKey");
    BS_STUB(F->C_DeriveKey(s, &mech, o, &attr, 1, &o2), "C_DeriveKey");
    RV_IN2(F->C_SeedRandom(s, buf, 16), CKR_SESSION_HANDLE_INVALID,
           CKR_RANDOM_SEED_NOT_SUPPORTED, "C_SeedRandom(bad session)");
    BS(F->C_GenerateRandom(s, out, 16), "C_GenerateRandom");
    BS_PAR(F->C_GetFunctionStatus(s), "C_GetFunctionStatus");
    BS_PAR(F->C_CancelFunction(s), "C_CancelFunction");
    BS(F30->C_LoginUser(s, CKU_USER, buf, 8, (CK_UTF8CHAR_PTR) "u", 1), "C_LoginUser");
    BS(F30->C_SessionCancel(s, CKF_ENCRYPT), "C_SessionCancel");
}

static void test_every_session_function_with_bad_handle(void)
{
    /* An open session first, so that "no sessions at all" is not the only
     * case covered. */
    CK_SESSION_HANDLE live = h_open(H.slot, 1);
    sweep_bad_session(H_BAD_SESSION);
    sweep_bad_session(CK_INVALID_HANDLE);
    CK_SESSION_HANDLE closed = h_open(H.slot, 0);
    RV_REQ(F->C_CloseSession(closed), CKR_OK, "C_CloseSession");
    if (closed != live)
        sweep_bad_session(closed);
    CK_SESSION_INFO si;
    RV_EQ(F->C_GetSessionInfo(live, &si), CKR_OK, "live session unaffected");
}

static void test_every_slot_function_with_bad_slot(void)
{
    CK_SLOT_INFO si;
    CK_TOKEN_INFO ti;
    CK_MECHANISM_INFO mi;
    CK_ULONG n = 0;
    CK_SESSION_HANDLE s;
    CK_UTF8CHAR label[32];
    h_pad(label, sizeof(label), "bad-slot");
    RV_EQ(F->C_GetSlotInfo(H_BAD_SLOT, &si), CKR_SLOT_ID_INVALID, "C_GetSlotInfo(bad slot)");
    RV_EQ(F->C_GetTokenInfo(H_BAD_SLOT, &ti), CKR_SLOT_ID_INVALID, "C_GetTokenInfo(bad slot)");
    RV_EQ(F->C_GetMechanismList(H_BAD_SLOT, NULL, &n), CKR_SLOT_ID_INVALID,
          "C_GetMechanismList(bad slot)");
    RV_EQ(F->C_GetMechanismInfo(H_BAD_SLOT, CKM_SHA256, &mi), CKR_SLOT_ID_INVALID,
          "C_GetMechanismInfo(bad slot)");
    RV_EQ(F->C_InitToken(H_BAD_SLOT, (CK_UTF8CHAR_PTR) "12345678", 8, label),
          CKR_SLOT_ID_INVALID, "C_InitToken(bad slot)");
    RV_EQ(F->C_OpenSession(H_BAD_SLOT, CKF_SERIAL_SESSION, NULL, NULL, &s),
          CKR_SLOT_ID_INVALID, "C_OpenSession(bad slot)");
    RV_EQ(F->C_CloseAllSessions(H_BAD_SLOT), CKR_SLOT_ID_INVALID,
          "C_CloseAllSessions(bad slot)");
}

static void test_legacy_parallel_functions(void)
{
    CK_SESSION_HANDLE s = h_open(H.slot, 0);
    RV_EQ(F->C_GetFunctionStatus(s), CKR_FUNCTION_NOT_PARALLEL, "C_GetFunctionStatus");
    RV_EQ(F->C_CancelFunction(s), CKR_FUNCTION_NOT_PARALLEL, "C_CancelFunction");
}

static const h_case CASES[] = {
    H_CASE(test_initialize_twice_and_finalize),
    H_CASE(test_initialize_with_args),
    H_CASE(test_initialize_with_some_mutex_callbacks_is_arguments_bad),
    H_CASE(test_initialize_reserved_nonnull_is_arguments_bad),
    H_CASE(test_finalize_nonnull_is_arguments_bad),
    H_CASE(test_get_info),
    H_CASE(test_function_lists_are_complete),
    H_CASE(test_interface_list_two_call_rule),
    H_CASE(test_get_interface_versions_and_errors),
    H_CASE(test_slot_list_two_call_rule),
    H_CASE(test_slot_and_token_info),
    H_CASE(test_init_token_keeps_slot_and_adds_empty_slot),
    H_CASE(test_mechanism_list_and_info),
    H_CASE(test_wait_for_slot_event_dont_block),
    H_CASE(test_generate_random),
    H_CASE(test_seed_random),
    H_CASE(test_every_function_before_initialize),
    H_CASE(test_every_session_function_with_bad_handle),
    H_CASE(test_every_slot_function_with_bad_slot),
    H_CASE(test_legacy_parallel_functions),
};

int t_general_register(void)
{
    return h_add_suite("general", CASES, NELEM(CASES));
}
