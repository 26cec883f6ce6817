/* Named users and roles (docs/roles.md) as a client sees them: the
 * "Vendor Custos" user-management interface (pkcs11/custos.h) and its
 * refusals, PIN-selected and named login with per-user lockout, what each
 * role may and may not do with keys, and per-family access through
 * CKA_CUSTOS_ALLOWED_USERS. Every refusal in the table of docs/roles.md is
 * checked with its exact code. The suite keeps its own token. */
#include "harness.h"
#include "custos.h"

#include <stdio.h>
#include <string.h>

/* The harness config sets [pin] max_retries = 10 (harness.c). */
#define MAX_RETRIES 10
#define ROLE_UNKNOWN 0x10UL /* no CUSTOS_ROLE_* has this bit */

/* ---- the suite's token, users and keys ----------------------------------- */
enum { U_GEN, U_DEC, U_AUD, U_BOTH, U_ADM2, U_COUNT };
static struct {
    const char *name;
    CK_ULONG roles;
    char pin[H_PIN_MAX];
} U[U_COUNT] = {
    [U_GEN] = { "gen", CUSTOS_ROLE_GENERATE, "" },
    [U_DEC] = { "dec", CUSTOS_ROLE_DECRYPT, "" },
    [U_AUD] = { "aud", CUSTOS_ROLE_AUDIT, "" },
    [U_BOTH] = { "both", CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT, "" },
    [U_ADM2] = { "adm2", CUSTOS_ROLE_ADMIN, "" },
};

/* Token keys the fixture makes (labels). kek, hmac, xdek, fam are private;
 * pub, pubhmac and fampub are public, so their handles do not change
 * between logins (a refusal on them cannot come from a stale handle). */
#define L_KEK "roles-kek"         /* AES-256: encrypt, decrypt, wrap, unwrap */
#define L_HMAC "roles-hmac"       /* generic secret: sign, verify */
#define L_XDEK "roles-xdek"       /* AES-256, extractable: a key to wrap */
#define L_PUB "roles-pub"         /* public AES: encrypt, decrypt, wrap, unwrap, extractable */
#define L_PUBHMAC "roles-pubhmac" /* public generic secret: sign, verify */
#define L_FAM "roles-fam"         /* private AES, allowed users "gen, both" */
#define L_FAMPUB "roles-fampub"   /* public AES, allowed users "gen, both" */
#define L_GENKEY "roles-genkey"   /* private AES made by gen */
#define FAMILY_USERS "gen, both"

static h_token RT;
static int fixture_tried, fixture_ready;
static CK_OBJECT_HANDLE stale_kek; /* the admin's handle, from an earlier login */
static CK_CUSTOS_FUNCTION_LIST_PTR V;

static CK_CUSTOS_FUNCTION_LIST_PTR vendor(void)
{
    if (V == NULL) {
        CK_INTERFACE_PTR itf = NULL;
        CK_VERSION v = { 1, 0 };
        RV_REQ(h_get_interface((CK_UTF8CHAR_PTR)CUSTOS_INTERFACE_NAME, &v, &itf, 0), CKR_OK,
               "C_GetInterface(\"Vendor Custos\", 1.0)");
        REQUIRE(itf != NULL && itf->pFunctionList != NULL, "the Vendor Custos interface has a function list");
        V = itf->pFunctionList;
    }
    return V;
}

/* ---- small wrappers ------------------------------------------------------ */
static CK_RV u_add(CK_SESSION_HANDLE s, const char *name, CK_ULONG roles, const char *pin)
{
    return vendor()->C_CustosUserAdd(s, (CK_UTF8CHAR_PTR)name, strlen(name), roles,
                                     (CK_UTF8CHAR_PTR)pin, strlen(pin));
}

static CK_RV u_remove(CK_SESSION_HANDLE s, const char *name)
{
    return vendor()->C_CustosUserRemove(s, (CK_UTF8CHAR_PTR)name, strlen(name));
}

static CK_RV u_roles(CK_SESSION_HANDLE s, const char *name, CK_ULONG roles)
{
    return vendor()->C_CustosUserSetRoles(s, (CK_UTF8CHAR_PTR)name, strlen(name), roles);
}

static CK_RV u_pin(CK_SESSION_HANDLE s, const char *name, const char *pin)
{
    return vendor()->C_CustosUserSetPIN(s, (CK_UTF8CHAR_PTR)name, strlen(name),
                                        (CK_UTF8CHAR_PTR)pin, strlen(pin));
}

static CK_RV u_enable(CK_SESSION_HANDLE s, const char *name, CK_BBOOL on)
{
    return vendor()->C_CustosUserEnable(s, (CK_UTF8CHAR_PTR)name, strlen(name), on);
}

static CK_RV login_user(CK_SESSION_HANDLE s, CK_USER_TYPE t, const char *pin, const char *name)
{
    return F30->C_LoginUser(s, t, (CK_UTF8CHAR_PTR)pin, strlen(pin), (CK_UTF8CHAR_PTR)name,
                            strlen(name));
}

/* A fresh random PIN (32 hex digits). */
static void new_pin(char pin[H_PIN_MAX])
{
    h_random_hex(pin, 16);
}

/* R/W session on the suite's token, with the admin "so" or the user whose
 * PIN it is logged in (C_Login, the PIN selects the user). Fatal. */
static CK_SESSION_HANDLE as_admin(void)
{
    CK_SESSION_HANDLE s = h_open(RT.slot, 1);
    h_login(s, CKU_SO, RT.so_pin);
    return s;
}

static CK_SESSION_HANDLE as_user(int u)
{
    CK_SESSION_HANDLE s = h_open(RT.slot, 1);
    char what[96];
    snprintf(what, sizeof(what), "C_Login(CKU_USER) with the PIN of %s", U[u].name);
    RV_REQ(h_login_rv(s, CKU_USER, U[u].pin), CKR_OK, what);
    return s;
}

/* Objects with this label visible to the session; *h gets the first. */
static CK_ULONG find_label(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *h)
{
    CK_ATTRIBUTE t[] = { { CKA_LABEL, (void *)label, strlen(label) } };
    CK_OBJECT_HANDLE found[8];
    CK_ULONG n = 0;
    if (h != NULL)
        *h = CK_INVALID_HANDLE;
    RV_REQ(F->C_FindObjectsInit(s, t, NELEM(t)), CKR_OK, "C_FindObjectsInit(label)");
    RV_EQ(F->C_FindObjects(s, found, NELEM(found), &n), CKR_OK, "C_FindObjects(label)");
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");
    if (n > 0 && h != NULL)
        *h = found[0];
    return n;
}

/* The handle of a key the session must see. Fatal when not exactly one. */
static CK_OBJECT_HANDLE must_find(CK_SESSION_HANDLE s, const char *label)
{
    CK_OBJECT_HANDLE h;
    char what[96];
    snprintf(what, sizeof(what), "exactly one object labelled %s is visible", label);
    REQUIRE(find_label(s, label, &h) == 1, what);
    return h;
}

/* C_GenerateKey of a 32-byte key with a label; token or session. */
static CK_RV keygen(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mt, const char *label, CK_BBOOL token,
                    const CK_ATTRIBUTE *extra, CK_ULONG nextra, CK_OBJECT_HANDLE *out)
{
    CK_ULONG len = 32;
    CK_MECHANISM m = { mt, NULL, 0 };
    CK_ATTRIBUTE t[16] = {
        { CKA_VALUE_LEN, &len, sizeof(len) },
        { CKA_LABEL, (void *)label, strlen(label) },
        { CKA_TOKEN, &token, sizeof(token) },
    };
    CK_ULONG n = 3;
    REQUIRE(nextra <= NELEM(t) - n, "keygen: template fits");
    for (CK_ULONG i = 0; i < nextra; i++)
        t[n++] = extra[i];
    *out = CK_INVALID_HANDLE;
    return F->C_GenerateKey(s, &m, t, n, out);
}

/* C_CreateObject of an AES key with a known value. */
static CK_RV import_aes(CK_SESSION_HANDLE s, CK_BBOOL token, CK_OBJECT_HANDLE *out)
{
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    uint8_t v[32];
    h_random(v, sizeof(v));
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) },   { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_VALUE, v, sizeof(v) },        { CKA_TOKEN, &token, sizeof(token) },
        { CKA_ENCRYPT, &h_true, 1 },
    };
    *out = CK_INVALID_HANDLE;
    return F->C_CreateObject(s, t, NELEM(t), out);
}

static void gcm_mech(CK_GCM_PARAMS *p, CK_MECHANISM *m, uint8_t iv[12])
{
    static uint8_t aad[] = "roles";
    h_gcm(p, m, iv, 12, aad, sizeof(aad) - 1, 128);
}

/* A complete GCM encryption: the C_EncryptInit code, or the first failure. */
static CK_RV encrypt_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    uint8_t iv[12], pt[16] = "sixteen bytes!!", ct[32];
    CK_ULONG ctlen = sizeof(ct);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    h_random(iv, sizeof(iv));
    gcm_mech(&p, &m, iv);
    CK_RV rv = F->C_EncryptInit(s, &m, k);
    if (rv != CKR_OK)
        return rv;
    return F->C_Encrypt(s, pt, sizeof(pt), ct, &ctlen);
}

/* The C_DecryptInit code; an operation it started is ended with a forged
 * ciphertext (which must fail the tag check). */
static CK_RV decrypt_init_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    uint8_t iv[12] = { 0 }, ct[32] = { 0 }, pt[32];
    CK_ULONG ptlen = sizeof(pt);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    gcm_mech(&p, &m, iv);
    CK_RV rv = F->C_DecryptInit(s, &m, k);
    if (rv == CKR_OK)
        RV_EQ(F->C_Decrypt(s, ct, sizeof(ct), pt, &ptlen), CKR_ENCRYPTED_DATA_INVALID,
              "C_Decrypt of a forged ciphertext ends the operation");
    return rv;
}

static CK_RV sign_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const uint8_t *data, CK_ULONG len,
                     uint8_t mac[32])
{
    CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
    CK_ULONG maclen = 32;
    CK_RV rv = F->C_SignInit(s, &m, k);
    if (rv != CKR_OK)
        return rv;
    return F->C_Sign(s, (CK_BYTE_PTR)data, len, mac, &maclen);
}

/* The C_VerifyInit code; a started operation is ended with a wrong MAC. */
static CK_RV verify_init_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    CK_MECHANISM m = { CKM_SHA256_HMAC, NULL, 0 };
    uint8_t data[4] = "data", mac[32] = { 0 };
    CK_RV rv = F->C_VerifyInit(s, &m, k);
    if (rv == CKR_OK)
        RV_EQ(F->C_Verify(s, data, sizeof(data), mac, sizeof(mac)), CKR_SIGNATURE_INVALID,
              "C_Verify of a wrong MAC ends the operation");
    return rv;
}

static CK_RV wrap_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek, CK_OBJECT_HANDLE k, uint8_t *w,
                     CK_ULONG *wlen)
{
    CK_MECHANISM m = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
    return F->C_WrapKey(s, &m, kek, k, w, wlen);
}

/* C_UnwrapKey into an AES key usable for encrypt and decrypt. */
static CK_RV unwrap_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek, uint8_t *w, CK_ULONG wlen,
                       CK_BBOOL token, CK_OBJECT_HANDLE *out)
{
    CK_MECHANISM m = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) }, { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_TOKEN, &token, sizeof(token) }, { CKA_ENCRYPT, &h_true, 1 },
        { CKA_DECRYPT, &h_true, 1 },
    };
    *out = CK_INVALID_HANDLE;
    return F->C_UnwrapKey(s, &m, kek, w, wlen, t, NELEM(t), out);
}

static CK_RV digest_key_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    CK_MECHANISM m = { CKM_SHA256, NULL, 0 };
    RV_REQ(F->C_DigestInit(s, &m), CKR_OK, "C_DigestInit(CKM_SHA256)");
    CK_RV rv = F->C_DigestKey(s, k);
    if (rv == CKR_OK) {
        uint8_t d[32];
        CK_ULONG dlen = sizeof(d);
        RV_EQ(F->C_DigestFinal(s, d, &dlen), CKR_OK, "C_DigestFinal ends the operation");
    }
    return rv;
}

static CK_RV copy_to_token_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    CK_OBJECT_HANDLE c = CK_INVALID_HANDLE;
    CK_ATTRIBUTE t[] = { { CKA_LABEL, "roles-copy", 10 }, { CKA_TOKEN, &h_true, 1 } };
    return F->C_CopyObject(s, k, t, NELEM(t), &c);
}

static CK_RV relabel_rv(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    CK_ATTRIBUTE t[] = { { CKA_LABEL, "roles-relabelled", 16 } };
    return F->C_SetAttributeValue(s, k, t, NELEM(t));
}

/* ---- user lists ---------------------------------------------------------- */
#define LIST_MAX 64
typedef struct user_list {
    CK_CUSTOS_USER_INFO u[LIST_MAX];
    CK_ULONG n;
} user_list;

/* Both calls of the two-call rule; fatal if the list does not come back. */
static void list_users(CK_SESSION_HANDLE s, user_list *l)
{
    CK_ULONG n = 0;
    memset(l, 0, sizeof(*l));
    RV_REQ(vendor()->C_CustosUserList(s, NULL, &n), CKR_OK, "C_CustosUserList size query");
    REQUIRE(n <= LIST_MAX, "user count fits the test's buffer");
    l->n = n;
    RV_REQ(vendor()->C_CustosUserList(s, l->u, &l->n), CKR_OK, "C_CustosUserList");
    CHECK(l->n == n, "C_CustosUserList returns as many users as the size query said");
}

static const CK_CUSTOS_USER_INFO *listed(const user_list *l, const char *name)
{
    const CK_CUSTOS_USER_INFO *hit = NULL;
    for (CK_ULONG i = 0; i < l->n; i++)
        if (memchr(l->u[i].name, '\0', sizeof(l->u[i].name)) != NULL &&
            strcmp((const char *)l->u[i].name, name) == 0) {
            CHECK(hit == NULL, "a user is listed once");
            hit = &l->u[i];
        }
    return hit;
}

/* ---- the fixture ---------------------------------------------------------- */
static void make_token_key(CK_SESSION_HANDLE s, CK_MECHANISM_TYPE mt, const char *label,
                           const CK_ATTRIBUTE *extra, CK_ULONG n)
{
    CK_OBJECT_HANDLE k;
    char what[96];
    snprintf(what, sizeof(what), "fixture: C_GenerateKey of token key %s", label);
    RV_REQ(keygen(s, mt, label, CK_TRUE, extra, n, &k), CKR_OK, what);
}

/* The token, its users and keys, made once per run by whichever test runs
 * first (each test has its own C_Initialize). */
static void fixture(void)
{
    if (fixture_ready)
        return;
    REQUIRE(!fixture_tried, "the roles fixture failed in an earlier test");
    fixture_tried = 1;
    (void)vendor();
    h_new_token(&RT, "roles", 1);
    for (int i = 0; i < U_COUNT; i++)
        new_pin(U[i].pin);

    CK_SESSION_HANDLE s = as_admin();
    for (int i = 0; i < U_COUNT; i++) {
        char what[96];
        snprintf(what, sizeof(what), "the admin adds user %s", U[i].name);
        RV_REQ(u_add(s, U[i].name, U[i].roles, U[i].pin), CKR_OK, what);
    }
    CK_BBOOL f = CK_FALSE;
    CK_ATTRIBUTE kek[] = { { CKA_PRIVATE, &h_true, 1 }, { CKA_ID, "kek-id", 6 },
                           { CKA_ENCRYPT, &h_true, 1 }, { CKA_DECRYPT, &h_true, 1 },
                           { CKA_WRAP, &h_true, 1 },    { CKA_UNWRAP, &h_true, 1 } };
    CK_ATTRIBUTE mac[] = { { CKA_SIGN, &h_true, 1 }, { CKA_VERIFY, &h_true, 1 } };
    CK_ATTRIBUTE xdek[] = { { CKA_EXTRACTABLE, &h_true, 1 }, { CKA_ENCRYPT, &h_true, 1 } };
    CK_ATTRIBUTE pub[] = { { CKA_PRIVATE, &f, 1 },       { CKA_EXTRACTABLE, &h_true, 1 },
                           { CKA_ENCRYPT, &h_true, 1 }, { CKA_DECRYPT, &h_true, 1 },
                           { CKA_WRAP, &h_true, 1 },    { CKA_UNWRAP, &h_true, 1 } };
    CK_ATTRIBUTE pubmac[] = { { CKA_PRIVATE, &f, 1 },
                              { CKA_SIGN, &h_true, 1 },
                              { CKA_VERIFY, &h_true, 1 } };
    CK_ATTRIBUTE fam[] = { { CKA_CUSTOS_ALLOWED_USERS, FAMILY_USERS, strlen(FAMILY_USERS) },
                           { CKA_ENCRYPT, &h_true, 1 },
                           { CKA_DECRYPT, &h_true, 1 } };
    CK_ATTRIBUTE fampub[] = { { CKA_CUSTOS_ALLOWED_USERS, FAMILY_USERS, strlen(FAMILY_USERS) },
                              { CKA_PRIVATE, &f, 1 },
                              { CKA_ENCRYPT, &h_true, 1 },
                              { CKA_DECRYPT, &h_true, 1 } };
    make_token_key(s, CKM_AES_KEY_GEN, L_KEK, kek, NELEM(kek));
    make_token_key(s, CKM_GENERIC_SECRET_KEY_GEN, L_HMAC, mac, NELEM(mac));
    make_token_key(s, CKM_AES_KEY_GEN, L_XDEK, xdek, NELEM(xdek));
    make_token_key(s, CKM_AES_KEY_GEN, L_PUB, pub, NELEM(pub));
    make_token_key(s, CKM_GENERIC_SECRET_KEY_GEN, L_PUBHMAC, pubmac, NELEM(pubmac));
    make_token_key(s, CKM_AES_KEY_GEN, L_FAM, fam, NELEM(fam));
    make_token_key(s, CKM_AES_KEY_GEN, L_FAMPUB, fampub, NELEM(fampub));
    stale_kek = must_find(s, L_KEK);
    RV_REQ(F->C_Logout(s), CKR_OK, "fixture: C_Logout(admin)");
    RV_REQ(h_login_rv(s, CKU_USER, U[U_GEN].pin), CKR_OK, "fixture: C_Login(gen)");
    CK_ATTRIBUTE gk[] = { { CKA_ID, "gen-id", 6 }, { CKA_ENCRYPT, &h_true, 1 } };
    make_token_key(s, CKM_AES_KEY_GEN, L_GENKEY, gk, NELEM(gk));
    RV_REQ(F->C_CloseSession(s), CKR_OK, "fixture: C_CloseSession");
    fixture_ready = 1;
}

/* ---- the interface ----------------------------------------------------- */
static void test_vendor_interface_is_offered(void)
{
    CK_CUSTOS_FUNCTION_LIST_PTR v = vendor();
    CHECK(v->version.major == 1 && v->version.minor == 0, "Vendor Custos function list is version 1.0");
    CHECK(v->C_CustosUserAdd != NULL && v->C_CustosUserRemove != NULL &&
              v->C_CustosUserSetRoles != NULL && v->C_CustosUserSetPIN != NULL &&
              v->C_CustosUserEnable != NULL && v->C_CustosUserList != NULL,
          "every Vendor Custos function is present");
    CK_INTERFACE list[16];
    CK_ULONG n = NELEM(list);
    RV_REQ(h_get_interface_list(list, &n), CKR_OK, "C_GetInterfaceList");
    int seen = 0;
    for (CK_ULONG i = 0; i < n; i++)
        if (list[i].pInterfaceName != NULL &&
            strcmp((const char *)list[i].pInterfaceName, CUSTOS_INTERFACE_NAME) == 0)
            seen++;
    CHECK(seen == 1, "C_GetInterfaceList lists \"Vendor Custos\" once");
    CK_INTERFACE_PTR itf = NULL;
    CK_VERSION v2 = { 2, 0 };
    RV_EQ(h_get_interface((CK_UTF8CHAR_PTR)CUSTOS_INTERFACE_NAME, &v2, &itf, 0), CKR_ARGUMENTS_BAD,
          "C_GetInterface(\"Vendor Custos\", 2.0), a version not offered");
}

/* ---- adding users ---------------------------------------------------------- */
static void test_admin_adds_users_with_each_role(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    user_list l;
    list_users(s, &l);
    for (int i = 0; i < U_COUNT; i++) {
        const CK_CUSTOS_USER_INFO *u = listed(&l, U[i].name);
        char what[96];
        snprintf(what, sizeof(what), "user %s is listed", U[i].name);
        REQUIRE(u != NULL, what);
        snprintf(what, sizeof(what), "user %s has the roles it was added with", U[i].name);
        CHECK(u->roles == U[i].roles, what);
        snprintf(what, sizeof(what), "user %s is enabled, unlocked, with no failures", U[i].name);
        CHECK(u->flags == 0 && u->failures == 0, what);
    }
    const CK_CUSTOS_USER_INFO *so = listed(&l, "so"), *user = listed(&l, "user");
    CHECK(so != NULL && so->roles == CUSTOS_ROLE_ADMIN, "C_InitToken made \"so\" with the admin role");
    CHECK(user != NULL && user->roles == (CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT),
          "C_InitPIN made \"user\" with generate + decrypt");
}

static void test_user_add_refuses_bad_names(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    char pin[H_PIN_MAX], n64[65], n63[64];
    new_pin(pin);
    memset(n64, 'n', 64);
    n64[64] = '\0';
    memset(n63, 'm', 63);
    n63[63] = '\0';
    RV_EQ(u_add(s, "", CUSTOS_ROLE_DECRYPT, pin), CKR_ARGUMENTS_BAD, "add a user named \"\"");
    RV_EQ(u_add(s, n64, CUSTOS_ROLE_DECRYPT, pin), CKR_ARGUMENTS_BAD, "add a user with a 64-byte name");
    RV_EQ(u_add(s, "a,b", CUSTOS_ROLE_DECRYPT, pin), CKR_ARGUMENTS_BAD, "add a user named \"a,b\"");
    RV_EQ(u_add(s, "*x", CUSTOS_ROLE_DECRYPT, pin), CKR_ARGUMENTS_BAD, "add a user named \"*x\"");
    RV_EQ(vendor()->C_CustosUserAdd(s, NULL, 3, CUSTOS_ROLE_DECRYPT, (CK_UTF8CHAR_PTR)pin, strlen(pin)),
          CKR_ARGUMENTS_BAD, "add a user with pName NULL");
    RV_EQ(vendor()->C_CustosUserAdd(s, (CK_UTF8CHAR_PTR)"nopin", 5, CUSTOS_ROLE_DECRYPT, NULL, 8),
          CKR_ARGUMENTS_BAD, "add a user with pPin NULL");
    user_list l;
    list_users(s, &l);
    CHECK(listed(&l, "") == NULL && listed(&l, n64) == NULL && listed(&l, "a,b") == NULL &&
              listed(&l, "*x") == NULL && listed(&l, "nopin") == NULL,
          "no refused name was added");
    /* The boundary: 63 bytes is the longest name. */
    RV_EQ(u_add(s, n63, CUSTOS_ROLE_DECRYPT, pin), CKR_OK, "add a user with a 63-byte name");
    list_users(s, &l);
    CHECK(listed(&l, n63) != NULL, "the 63-byte name is listed whole");
    RV_EQ(u_remove(s, n63), CKR_OK, "remove the 63-byte-name user");
}

static void test_user_add_refuses_bad_roles(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    char pin[H_PIN_MAX];
    new_pin(pin);
    RV_EQ(u_add(s, "r0", 0, pin), CKR_ARGUMENTS_BAD, "add a user with no role");
    RV_EQ(u_add(s, "r1", CUSTOS_ROLE_ADMIN | CUSTOS_ROLE_DECRYPT, pin), CKR_ARGUMENTS_BAD,
          "add a user with admin + decrypt");
    RV_EQ(u_add(s, "r2", CUSTOS_ROLE_ADMIN | CUSTOS_ROLE_AUDIT, pin), CKR_ARGUMENTS_BAD,
          "add a user with admin + audit");
    RV_EQ(u_add(s, "r3", CUSTOS_ROLE_DECRYPT | ROLE_UNKNOWN, pin), CKR_ARGUMENTS_BAD,
          "add a user with an unknown role bit");
    user_list l;
    list_users(s, &l);
    CHECK(listed(&l, "r0") == NULL && listed(&l, "r1") == NULL && listed(&l, "r2") == NULL &&
              listed(&l, "r3") == NULL,
          "no user with refused roles was added");
}

static void test_user_add_refuses_duplicate_name(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    char pin[H_PIN_MAX];
    new_pin(pin);
    RV_EQ(u_add(s, "gen", CUSTOS_ROLE_DECRYPT, pin), CKR_ACTION_PROHIBITED, "add a second \"gen\"");
    RV_EQ(u_add(s, "so", CUSTOS_ROLE_ADMIN, pin), CKR_ACTION_PROHIBITED, "add a second \"so\"");
    RV_EQ(u_add(s, "user", CUSTOS_ROLE_DECRYPT, pin), CKR_ACTION_PROHIBITED, "add a second \"user\"");
    user_list l;
    list_users(s, &l);
    const CK_CUSTOS_USER_INFO *g = listed(&l, "gen");
    CHECK(g != NULL && g->roles == CUSTOS_ROLE_GENERATE, "the refused duplicate left gen's roles alone");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(login_user(s, CKU_USER, pin, "gen"), CKR_PIN_INCORRECT,
          "the refused duplicate's PIN does not open gen");
    RV_EQ(login_user(s, CKU_USER, U[U_GEN].pin, "gen"), CKR_OK, "gen's own PIN still opens gen");
}

static void test_user_add_refuses_pin_of_another_user(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    RV_EQ(u_add(s, "samepin", CUSTOS_ROLE_DECRYPT, U[U_GEN].pin), CKR_PIN_INVALID,
          "add a user with gen's PIN");
    RV_EQ(u_add(s, "samepin", CUSTOS_ROLE_GENERATE, RT.user_pin), CKR_PIN_INVALID,
          "add a user with the PIN of \"user\"");
    RV_EQ(u_add(s, "samepin", CUSTOS_ROLE_ADMIN, U[U_ADM2].pin), CKR_PIN_INVALID,
          "add an admin with adm2's PIN");
    user_list l;
    list_users(s, &l);
    CHECK(listed(&l, "samepin") == NULL, "no user with a PIN in use was added");
}

static void test_user_add_refuses_pin_length_out_of_range(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    char long_pin[257];
    memset(long_pin, 'p', 256);
    long_pin[256] = '\0';
    RV_EQ(u_add(s, "shortpin", CUSTOS_ROLE_DECRYPT, "abc"), CKR_PIN_LEN_RANGE, "add a user with a 3-byte PIN");
    RV_EQ(u_add(s, "longpin", CUSTOS_ROLE_DECRYPT, long_pin), CKR_PIN_LEN_RANGE,
          "add a user with a 256-byte PIN");
    user_list l;
    list_users(s, &l);
    CHECK(listed(&l, "shortpin") == NULL && listed(&l, "longpin") == NULL,
          "no user with a PIN out of range was added");
}

/* ---- who may manage users ------------------------------------------------ */
/* All six functions, each expected to give want. */
static void all_refused(CK_SESSION_HANDLE s, CK_RV want, CK_RV want_list, const char *who)
{
    char pin[H_PIN_MAX], what[128];
    CK_ULONG n = 0;
    new_pin(pin);
    snprintf(what, sizeof(what), "C_CustosUserAdd %s", who);
    RV_EQ(u_add(s, "nope", CUSTOS_ROLE_DECRYPT, pin), want, what);
    snprintf(what, sizeof(what), "C_CustosUserRemove %s", who);
    RV_EQ(u_remove(s, "dec"), want, what);
    snprintf(what, sizeof(what), "C_CustosUserSetRoles %s", who);
    RV_EQ(u_roles(s, "dec", CUSTOS_ROLE_GENERATE), want, what);
    snprintf(what, sizeof(what), "C_CustosUserSetPIN %s", who);
    RV_EQ(u_pin(s, "dec", pin), want, what);
    snprintf(what, sizeof(what), "C_CustosUserEnable(FALSE) %s", who);
    RV_EQ(u_enable(s, "dec", CK_FALSE), want, what);
    snprintf(what, sizeof(what), "C_CustosUserList %s", who);
    RV_EQ(vendor()->C_CustosUserList(s, NULL, &n), want_list, what);
}

static void test_user_management_needs_an_admin(void)
{
    fixture();
    CK_SESSION_HANDLE s = h_open(RT.slot, 1);
    all_refused(s, CKR_USER_NOT_LOGGED_IN, CKR_USER_NOT_LOGGED_IN, "with nobody logged in");
    RV_REQ(h_login_rv(s, CKU_USER, U[U_GEN].pin), CKR_OK, "C_Login(gen)");
    all_refused(s, CKR_USER_NOT_LOGGED_IN, CKR_USER_NOT_LOGGED_IN, "as gen (not an admin)");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_REQ(h_login_rv(s, CKU_USER, U[U_AUD].pin), CKR_OK, "C_Login(aud)");
    all_refused(s, CKR_USER_NOT_LOGGED_IN, CKR_USER_NOT_LOGGED_IN, "as aud (not an admin)");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_REQ(h_login_rv(s, CKU_USER, RT.user_pin), CKR_OK, "C_Login(user)");
    all_refused(s, CKR_USER_NOT_LOGGED_IN, CKR_USER_NOT_LOGGED_IN, "as \"user\" (not an admin)");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    all_refused(H_BAD_SESSION, CKR_SESSION_HANDLE_INVALID, CKR_SESSION_HANDLE_INVALID,
                "on a session handle never issued");

    /* Nothing above changed anything. */
    h_login(s, CKU_SO, RT.so_pin);
    user_list l;
    list_users(s, &l);
    const CK_CUSTOS_USER_INFO *d = listed(&l, "dec");
    CHECK(listed(&l, "nope") == NULL, "the refused add added nobody");
    CHECK(d != NULL && d->roles == CUSTOS_ROLE_DECRYPT && d->flags == 0,
          "the refused calls left dec as it was");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(login_user(s, CKU_USER, U[U_DEC].pin, "dec"), CKR_OK, "dec's PIN is unchanged");
}

/* An admin never holds an R/O session (PKCS#11 3.2 sec. 5.6: C_Login(CKU_SO)
 * with an R/O session open is CKR_SESSION_READ_ONLY_EXISTS, and an R/O
 * session cannot be opened while the SO is logged in), so the changing
 * functions can only meet an R/O session without an admin: custos.h gives
 * CKR_SESSION_READ_ONLY for it. Listing changes nothing: it needs the
 * admin, which an R/O session never has. */
static void test_user_management_in_read_only_session(void)
{
    fixture();
    CK_SESSION_HANDLE ro = h_open(RT.slot, 0);
    all_refused(ro, CKR_SESSION_READ_ONLY, CKR_USER_NOT_LOGGED_IN, "in an R/O session");
    RV_EQ(h_login_rv(ro, CKU_SO, RT.so_pin), CKR_SESSION_READ_ONLY_EXISTS,
          "C_Login(CKU_SO) while an R/O session is open");
    RV_EQ(F->C_CloseSession(ro), CKR_OK, "C_CloseSession(R/O)");
    CK_SESSION_HANDLE s = as_admin();
    CK_SESSION_HANDLE ro2 = CK_INVALID_HANDLE;
    RV_EQ(F->C_OpenSession(RT.slot, CKF_SERIAL_SESSION, NULL, NULL, &ro2),
          CKR_SESSION_READ_WRITE_SO_EXISTS, "C_OpenSession(R/O) while the admin is logged in");
    user_list l;
    list_users(s, &l);
    CHECK(listed(&l, "nope") == NULL, "the R/O session added nobody");
}

/* ---- listing ------------------------------------------------------------- */
static void test_user_list_two_call_rule_hides_counters(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    CK_CUSTOS_USER_INFO info[LIST_MAX];
    CK_ULONG n = 0, small;
    RV_REQ(vendor()->C_CustosUserList(s, NULL, &n), CKR_OK, "C_CustosUserList(NULL) size query");
    CHECK(n >= U_COUNT + 2, "the size query counts so, user and the five added users");
    REQUIRE(n <= LIST_MAX, "user count fits the test's buffer");
    small = n - 1;
    RV_EQ(vendor()->C_CustosUserList(s, info, &small), CKR_BUFFER_TOO_SMALL,
          "C_CustosUserList with room for one user too few");
    CHECK(small == n, "CKR_BUFFER_TOO_SMALL sets *pulCount to the number needed");
    small = 0;
    RV_EQ(vendor()->C_CustosUserList(s, info, &small), CKR_BUFFER_TOO_SMALL,
          "C_CustosUserList with room for none");
    RV_EQ(vendor()->C_CustosUserList(s, info, NULL), CKR_ARGUMENTS_BAD,
          "C_CustosUserList(pulCount NULL)");
    CK_ULONG got = LIST_MAX;
    RV_REQ(vendor()->C_CustosUserList(s, info, &got), CKR_OK, "C_CustosUserList with room to spare");
    CHECK(got == n, "C_CustosUserList returns as many as the size query said");
    for (CK_ULONG i = 0; i < got && i < LIST_MAX; i++) {
        const char *nm = (const char *)info[i].name;
        CHECK(memchr(nm, '\0', sizeof(info[i].name)) != NULL, "every listed name is NUL-terminated");
        CHECK(nm[0] != '\0' && nm[0] != '*', "no hidden counter (a name starting with '*') is listed");
        CHECK(info[i].roles != 0 && (info[i].roles & ~0xfUL) == 0, "every listed user has known roles");
    }
    user_list l;
    list_users(s, &l);
    CHECK(listed(&l, "so") != NULL && listed(&l, "user") != NULL, "so and user are listed");
    for (int i = 0; i < U_COUNT; i++)
        CHECK(listed(&l, U[i].name) != NULL, "every added user is listed");
}

/* ---- remove, roles, PIN, enable ------------------------------------------ */
static void test_user_remove_and_its_refusals(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    char pin[H_PIN_MAX];
    new_pin(pin);
    RV_REQ(u_add(s, "rm1", CUSTOS_ROLE_DECRYPT, pin), CKR_OK, "add rm1");
    RV_EQ(u_remove(s, "rm1"), CKR_OK, "remove rm1");
    user_list l;
    list_users(s, &l);
    CHECK(listed(&l, "rm1") == NULL, "a removed user is no longer listed");
    RV_EQ(u_remove(s, "rm1"), CKR_ARGUMENTS_BAD, "remove rm1 again (unknown user)");
    RV_EQ(u_remove(s, "nobody"), CKR_ARGUMENTS_BAD, "remove an unknown user");
    RV_EQ(u_remove(s, "*user"), CKR_ARGUMENTS_BAD, "remove \"*user\" (not a user name)");
    RV_EQ(u_remove(s, "so"), CKR_ACTION_PROHIBITED, "the admin removes itself");
    list_users(s, &l);
    CHECK(listed(&l, "so") != NULL, "the admin is still there");

    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(login_user(s, CKU_USER, pin, "rm1"), CKR_PIN_INCORRECT, "C_LoginUser as a removed user");
    RV_EQ(h_login_rv(s, CKU_USER, pin), CKR_PIN_INCORRECT, "C_Login with a removed user's PIN");

    /* The removed user's PIN is free again. */
    h_login(s, CKU_SO, RT.so_pin);
    RV_EQ(u_add(s, "rm2", CUSTOS_ROLE_DECRYPT, pin), CKR_OK, "add rm2 with the removed user's PIN");
    RV_EQ(u_remove(s, "rm2"), CKR_OK, "remove rm2");
}

static void test_user_set_roles_and_its_refusals(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    char pin[H_PIN_MAX];
    new_pin(pin);
    RV_REQ(u_add(s, "rl", CUSTOS_ROLE_DECRYPT, pin), CKR_OK, "add rl (decrypt)");
    RV_EQ(u_roles(s, "rl", CUSTOS_ROLE_GENERATE), CKR_OK, "set rl's roles to generate");
    user_list l;
    list_users(s, &l);
    const CK_CUSTOS_USER_INFO *r = listed(&l, "rl");
    CHECK(r != NULL && r->roles == CUSTOS_ROLE_GENERATE, "the list shows rl's new roles");

    RV_EQ(u_roles(s, "rl", CUSTOS_ROLE_ADMIN), CKR_ACTION_PROHIBITED, "make the non-admin rl an admin");
    RV_EQ(u_roles(s, "adm2", CUSTOS_ROLE_GENERATE), CKR_ACTION_PROHIBITED, "make the admin adm2 a non-admin");
    RV_EQ(u_roles(s, "rl", 0), CKR_ARGUMENTS_BAD, "set rl's roles to none");
    RV_EQ(u_roles(s, "rl", CUSTOS_ROLE_ADMIN | CUSTOS_ROLE_GENERATE), CKR_ARGUMENTS_BAD,
          "set rl's roles to admin + generate");
    RV_EQ(u_roles(s, "rl", ROLE_UNKNOWN), CKR_ARGUMENTS_BAD, "set rl's roles to an unknown bit");
    RV_EQ(u_roles(s, "nobody", CUSTOS_ROLE_DECRYPT), CKR_ARGUMENTS_BAD, "set an unknown user's roles");
    list_users(s, &l);
    r = listed(&l, "rl");
    const CK_CUSTOS_USER_INFO *a = listed(&l, "adm2");
    CHECK(r != NULL && r->roles == CUSTOS_ROLE_GENERATE, "refused role changes left rl alone");
    CHECK(a != NULL && a->roles == CUSTOS_ROLE_ADMIN, "refused role changes left adm2 alone");

    /* The effect: rl now has the write path, not the read path. */
    CK_OBJECT_HANDLE kek;
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_REQ(login_user(s, CKU_USER, pin, "rl"), CKR_OK, "C_LoginUser(rl)");
    kek = must_find(s, L_KEK);
    RV_EQ(encrypt_rv(s, kek), CKR_OK, "rl, now generate, encrypts");
    RV_EQ(decrypt_init_rv(s, kek), CKR_ACTION_PROHIBITED, "rl, no longer decrypt, C_DecryptInit");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    h_login(s, CKU_SO, RT.so_pin);
    RV_EQ(u_remove(s, "rl"), CKR_OK, "remove rl");
}

static void test_user_set_pin_and_its_refusals(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    char p1[H_PIN_MAX], p2[H_PIN_MAX];
    new_pin(p1);
    new_pin(p2);
    RV_REQ(u_add(s, "pw", CUSTOS_ROLE_GENERATE, p1), CKR_OK, "add pw");
    RV_EQ(u_pin(s, "pw", p2), CKR_OK, "the admin sets pw's PIN");
    RV_EQ(u_pin(s, "pw", "abc"), CKR_PIN_LEN_RANGE, "set pw's PIN to 3 bytes");
    RV_EQ(u_pin(s, "pw", U[U_DEC].pin), CKR_PIN_INVALID, "set pw's PIN to dec's");
    RV_EQ(u_pin(s, "nobody", p1), CKR_ARGUMENTS_BAD, "set an unknown user's PIN");
    RV_EQ(u_pin(s, "", p1), CKR_ARGUMENTS_BAD, "set the PIN of user \"\"");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    RV_EQ(login_user(s, CKU_USER, p1, "pw"), CKR_PIN_INCORRECT, "C_LoginUser(pw) with the old PIN");
    RV_EQ(login_user(s, CKU_USER, p2, "pw"), CKR_OK, "C_LoginUser(pw) with the new PIN");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(login_user(s, CKU_USER, U[U_DEC].pin, "dec"), CKR_OK, "the refused change left dec's PIN alone");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    h_login(s, CKU_SO, RT.so_pin);
    RV_EQ(u_remove(s, "pw"), CKR_OK, "remove pw");
}

static void test_user_disable_enable_and_their_refusals(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    char pin[H_PIN_MAX];
    new_pin(pin);
    RV_REQ(u_add(s, "off", CUSTOS_ROLE_GENERATE, pin), CKR_OK, "add off");
    RV_EQ(u_enable(s, "off", CK_FALSE), CKR_OK, "disable off");
    user_list l;
    list_users(s, &l);
    const CK_CUSTOS_USER_INFO *o = listed(&l, "off");
    CHECK(o != NULL && (o->flags & CKF_CUSTOS_USER_DISABLED), "the list shows off as disabled");
    RV_EQ(u_enable(s, "so", CK_FALSE), CKR_ACTION_PROHIBITED, "the admin disables itself");
    RV_EQ(u_enable(s, "nobody", CK_FALSE), CKR_ARGUMENTS_BAD, "disable an unknown user");
    RV_EQ(u_enable(s, "nobody", CK_TRUE), CKR_ARGUMENTS_BAD, "enable an unknown user");
    RV_EQ(u_enable(s, "adm2", CK_FALSE), CKR_OK, "disable the second admin");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    RV_EQ(h_login_rv(s, CKU_USER, pin), CKR_PIN_LOCKED, "C_Login with a disabled user's PIN");
    RV_EQ(login_user(s, CKU_USER, pin, "off"), CKR_PIN_LOCKED, "C_LoginUser of a disabled user");
    RV_EQ(h_login_rv(s, CKU_SO, U[U_ADM2].pin), CKR_PIN_LOCKED, "C_Login(CKU_SO) of a disabled admin");
    RV_EQ(login_user(s, CKU_SO, RT.so_pin, "so"), CKR_OK, "the enabled admin still logs in");
    RV_EQ(u_enable(s, "off", CK_TRUE), CKR_OK, "enable off");
    RV_EQ(u_enable(s, "adm2", CK_TRUE), CKR_OK, "enable adm2");
    list_users(s, &l);
    o = listed(&l, "off");
    CHECK(o != NULL && !(o->flags & CKF_CUSTOS_USER_DISABLED), "the list shows off as enabled");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(h_login_rv(s, CKU_USER, pin), CKR_OK, "an enabled user logs in with its old PIN");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(h_login_rv(s, CKU_SO, U[U_ADM2].pin), CKR_OK, "the enabled adm2 logs in");
    RV_EQ(u_remove(s, "off"), CKR_OK, "adm2 removes off");
}

/* ---- logging in ------------------------------------------------------------ */
static void test_login_pin_selects_the_user(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_user(U_GEN);
    CK_OBJECT_HANDLE kek = must_find(s, L_KEK);
    RV_EQ(encrypt_rv(s, kek), CKR_OK, "gen's PIN: encrypt");
    RV_EQ(decrypt_init_rv(s, kek), CKR_ACTION_PROHIBITED, "gen's PIN: C_DecryptInit");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    RV_REQ(h_login_rv(s, CKU_USER, U[U_DEC].pin), CKR_OK, "C_Login with dec's PIN");
    kek = must_find(s, L_KEK);
    RV_EQ(encrypt_rv(s, kek), CKR_ACTION_PROHIBITED, "dec's PIN: C_EncryptInit");
    RV_EQ(decrypt_init_rv(s, kek), CKR_OK, "dec's PIN: C_DecryptInit");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    RV_REQ(h_login_rv(s, CKU_USER, U[U_BOTH].pin), CKR_OK, "C_Login with both's PIN");
    kek = must_find(s, L_KEK);
    RV_EQ(encrypt_rv(s, kek), CKR_OK, "both's PIN: encrypt");
    RV_EQ(decrypt_init_rv(s, kek), CKR_OK, "both's PIN: C_DecryptInit");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    RV_REQ(h_login_rv(s, CKU_USER, U[U_AUD].pin), CKR_OK, "C_Login with aud's PIN");
    CHECK(find_label(s, L_KEK, NULL) == 0, "aud's PIN: the private KEK is not found");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    RV_EQ(h_login_rv(s, CKU_USER, U[U_ADM2].pin), CKR_PIN_INCORRECT, "C_Login(CKU_USER) with an admin's PIN");
    RV_EQ(h_login_rv(s, CKU_SO, U[U_GEN].pin), CKR_PIN_INCORRECT, "C_Login(CKU_SO) with gen's PIN");
    RV_REQ(h_login_rv(s, CKU_SO, U[U_ADM2].pin), CKR_OK, "C_Login(CKU_SO) with adm2's PIN");
    user_list l;
    list_users(s, &l);
    CHECK(listed(&l, "adm2") != NULL, "adm2's PIN: the admin lists users");
}

static void test_login_user_names_the_user(void)
{
    fixture();
    CK_SESSION_HANDLE s = h_open(RT.slot, 1);
    RV_REQ(login_user(s, CKU_USER, U[U_GEN].pin, "gen"), CKR_OK, "C_LoginUser(CKU_USER, gen)");
    CK_OBJECT_HANDLE kek = must_find(s, L_KEK);
    RV_EQ(encrypt_rv(s, kek), CKR_OK, "C_LoginUser(gen): encrypt");
    RV_EQ(decrypt_init_rv(s, kek), CKR_ACTION_PROHIBITED, "C_LoginUser(gen): C_DecryptInit");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_REQ(login_user(s, CKU_USER, RT.user_pin, "user"), CKR_OK, "C_LoginUser(CKU_USER, user)");
    kek = must_find(s, L_KEK);
    RV_EQ(decrypt_init_rv(s, kek), CKR_OK, "C_LoginUser(user): C_DecryptInit");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_REQ(login_user(s, CKU_SO, U[U_ADM2].pin, "adm2"), CKR_OK, "C_LoginUser(CKU_SO, adm2)");
    user_list l;
    list_users(s, &l);
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(login_user(s, CKU_SO, RT.so_pin, "so"), CKR_OK, "C_LoginUser(CKU_SO, so)");
}

static void test_login_user_wrong_name_or_type_is_pin_incorrect(void)
{
    fixture();
    CK_SESSION_HANDLE s = h_open(RT.slot, 1);
    RV_EQ(login_user(s, CKU_USER, U[U_GEN].pin, "nobody"), CKR_PIN_INCORRECT,
          "C_LoginUser with gen's PIN and an unknown name");
    RV_EQ(login_user(s, CKU_USER, U[U_GEN].pin, "dec"), CKR_PIN_INCORRECT,
          "C_LoginUser with gen's PIN and dec's name");
    RV_EQ(login_user(s, CKU_SO, U[U_GEN].pin, "gen"), CKR_PIN_INCORRECT,
          "C_LoginUser(CKU_SO) as the non-admin gen");
    RV_EQ(login_user(s, CKU_USER, U[U_ADM2].pin, "adm2"), CKR_PIN_INCORRECT,
          "C_LoginUser(CKU_USER) as the admin adm2");
    RV_EQ(login_user(s, CKU_USER, RT.user_pin, "*user"), CKR_PIN_INCORRECT,
          "C_LoginUser as the hidden counter \"*user\"");
    /* Successful logins; they also reset the counts just made. */
    RV_EQ(login_user(s, CKU_USER, U[U_DEC].pin, "dec"), CKR_OK, "C_LoginUser(dec) after the failures");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(login_user(s, CKU_USER, U[U_GEN].pin, "gen"), CKR_OK, "C_LoginUser(gen) after the failures");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(h_login_rv(s, CKU_USER, U[U_GEN].pin), CKR_OK, "C_Login(gen) after the failures");
}

/* The failures of user lk, as the admin's list shows them. */
static void lk_state(CK_SESSION_HANDLE s, CK_ULONG *failures, CK_FLAGS *flags)
{
    user_list l;
    h_login(s, CKU_SO, RT.so_pin);
    list_users(s, &l);
    const CK_CUSTOS_USER_INFO *u = listed(&l, "lk");
    REQUIRE(u != NULL, "lk is listed");
    *failures = u->failures;
    *flags = u->flags;
    RV_REQ(F->C_Logout(s), CKR_OK, "C_Logout(admin)");
}

static void test_login_user_failures_lock_that_user_until_admin_sets_pin(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    char pin[H_PIN_MAX], wrong[H_PIN_MAX], pin2[H_PIN_MAX];
    CK_ULONG fails = 99;
    CK_FLAGS fl = 99;
    new_pin(pin);
    new_pin(wrong);
    new_pin(pin2);
    RV_REQ(u_add(s, "lk", CUSTOS_ROLE_DECRYPT, pin), CKR_OK, "add lk");
    RV_REQ(F->C_Logout(s), CKR_OK, "C_Logout");

    for (int i = 0; i < 3; i++)
        RV_EQ(login_user(s, CKU_USER, wrong, "lk"), CKR_PIN_INCORRECT, "C_LoginUser(lk) with a wrong PIN");
    lk_state(s, &fails, &fl);
    CHECK(fails == 3, "three wrong PINs count three failures on lk");
    CHECK(!(fl & CKF_CUSTOS_USER_LOCKED), "lk is not locked after three");
    RV_EQ(login_user(s, CKU_USER, pin, "lk"), CKR_OK, "C_LoginUser(lk) with its PIN");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    lk_state(s, &fails, &fl);
    CHECK(fails == 0, "a successful login clears lk's failures");

    for (int i = 0; i < MAX_RETRIES - 1; i++)
        RV_EQ(login_user(s, CKU_USER, wrong, "lk"), CKR_PIN_INCORRECT, "C_LoginUser(lk) with a wrong PIN");
    RV_IN2(login_user(s, CKU_USER, wrong, "lk"), CKR_PIN_INCORRECT, CKR_PIN_LOCKED,
           "the max_retries-th wrong PIN for lk");
    RV_EQ(login_user(s, CKU_USER, wrong, "lk"), CKR_PIN_LOCKED, "C_LoginUser(lk) once locked, wrong PIN");
    RV_EQ(login_user(s, CKU_USER, pin, "lk"), CKR_PIN_LOCKED, "C_LoginUser(lk) once locked, right PIN");
    RV_EQ(h_login_rv(s, CKU_USER, pin), CKR_PIN_LOCKED, "C_Login with locked lk's PIN");
    RV_EQ(login_user(s, CKU_USER, U[U_DEC].pin, "dec"), CKR_OK, "another user is not locked by lk's failures");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    lk_state(s, &fails, &fl);
    CHECK(fl & CKF_CUSTOS_USER_LOCKED, "the list shows lk as locked");
    CHECK(fails >= MAX_RETRIES, "the list shows at least max_retries failures for lk");

    h_login(s, CKU_SO, RT.so_pin);
    RV_EQ(u_pin(s, "lk", pin2), CKR_OK, "the admin sets lk's PIN");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    lk_state(s, &fails, &fl);
    CHECK(fails == 0 && !(fl & CKF_CUSTOS_USER_LOCKED), "setting the PIN unlocks lk and clears its failures");
    RV_EQ(login_user(s, CKU_USER, pin, "lk"), CKR_PIN_INCORRECT, "C_LoginUser(lk) with the old PIN");
    RV_EQ(login_user(s, CKU_USER, pin2, "lk"), CKR_OK, "C_LoginUser(lk) with the new PIN");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    h_login(s, CKU_SO, RT.so_pin);
    RV_EQ(u_remove(s, "lk"), CKR_OK, "remove lk");
}

/* ---- what each role may do ---------------------------------------------- */
static void test_generate_role_has_write_path_not_read_path(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_user(U_GEN);
    CK_OBJECT_HANDLE kek = must_find(s, L_KEK), mac = must_find(s, L_HMAC), xdek = must_find(s, L_XDEK);
    CK_OBJECT_HANDLE sk, tk, u;
    CK_ATTRIBUTE ed[] = { { CKA_ENCRYPT, &h_true, 1 }, { CKA_DECRYPT, &h_true, 1 } };
    RV_EQ(keygen(s, CKM_AES_KEY_GEN, "gen-session", CK_FALSE, ed, NELEM(ed), &sk), CKR_OK,
          "gen generates a session key");
    RV_EQ(keygen(s, CKM_AES_KEY_GEN, "gen-token", CK_TRUE, ed, NELEM(ed), &tk), CKR_OK,
          "gen generates a token key");
    RV_EQ(encrypt_rv(s, sk), CKR_OK, "gen encrypts with its session key");
    RV_EQ(encrypt_rv(s, kek), CKR_OK, "gen encrypts with the KEK");
    uint8_t data[] = "to be signed", m[32];
    RV_EQ(sign_rv(s, mac, data, sizeof(data), m), CKR_OK, "gen signs with HMAC");
    uint8_t w[64];
    CK_ULONG wlen = sizeof(w);
    RV_EQ(wrap_rv(s, kek, xdek, w, &wlen), CKR_OK, "gen wraps a key");
    CHECK(wlen == 40, "a 32-byte key wraps to 40 bytes");

    RV_EQ(decrypt_init_rv(s, sk), CKR_ACTION_PROHIBITED, "gen C_DecryptInit with its own session key");
    RV_EQ(decrypt_init_rv(s, kek), CKR_ACTION_PROHIBITED, "gen C_DecryptInit with the KEK");
    RV_EQ(unwrap_rv(s, kek, w, wlen, CK_FALSE, &u), CKR_ACTION_PROHIBITED,
          "gen C_UnwrapKey into a session key");
    CHECK(u == CK_INVALID_HANDLE, "the refused unwrap made no key");
    RV_EQ(F->C_DestroyObject(s, tk), CKR_OK, "gen destroys the token key it made");
}

static void test_decrypt_role_has_read_path_not_write_path(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_user(U_DEC);
    CK_OBJECT_HANDLE kek = must_find(s, L_KEK), mac = must_find(s, L_HMAC), xdek = must_find(s, L_XDEK);
    CK_OBJECT_HANDLE k;
    RV_EQ(decrypt_init_rv(s, kek), CKR_OK, "dec C_DecryptInit");
    RV_EQ(verify_init_rv(s, mac), CKR_OK, "dec C_VerifyInit");

    uint8_t data[] = "to be signed", m[32], w[64];
    CK_ULONG wlen = sizeof(w);
    RV_EQ(encrypt_rv(s, kek), CKR_ACTION_PROHIBITED, "dec C_EncryptInit");
    RV_EQ(sign_rv(s, mac, data, sizeof(data), m), CKR_ACTION_PROHIBITED, "dec C_SignInit");
    RV_EQ(wrap_rv(s, kek, xdek, w, &wlen), CKR_ACTION_PROHIBITED, "dec C_WrapKey");
    CK_ATTRIBUTE ed[] = { { CKA_DECRYPT, &h_true, 1 } };
    RV_EQ(keygen(s, CKM_AES_KEY_GEN, "dec-token", CK_TRUE, ed, NELEM(ed), &k), CKR_ACTION_PROHIBITED,
          "dec C_GenerateKey of a token key");
    RV_EQ(keygen(s, CKM_AES_KEY_GEN, "dec-session", CK_FALSE, ed, NELEM(ed), &k), CKR_ACTION_PROHIBITED,
          "dec C_GenerateKey of a session key");
    RV_EQ(import_aes(s, CK_TRUE, &k), CKR_ACTION_PROHIBITED, "dec C_CreateObject of a token key");
    RV_EQ(import_aes(s, CK_FALSE, &k), CKR_ACTION_PROHIBITED, "dec C_CreateObject of a session key");
    RV_EQ(copy_to_token_rv(s, kek), CKR_ACTION_PROHIBITED, "dec C_CopyObject of a token key");
    RV_EQ(relabel_rv(s, kek), CKR_ACTION_PROHIBITED, "dec C_SetAttributeValue on a token key");
    RV_EQ(F->C_DestroyObject(s, kek), CKR_ACTION_PROHIBITED, "dec C_DestroyObject of a token key");
    CHECK(find_label(s, L_KEK, NULL) == 1 && find_label(s, "dec-token", NULL) == 0 &&
              find_label(s, "roles-copy", NULL) == 0,
          "the refused calls neither destroyed nor made a key");
}

/* The envelope flow across two users: gen makes a DEK, encrypts, wraps it
 * under the KEK and signs; dec verifies, unwraps the DEK as a session object
 * and decrypts. */
static void test_envelope_flow_from_generate_user_to_decrypt_user(void)
{
    fixture();
    uint8_t pt[48], ct[64], back[64], mac[32], w[64], iv[12];
    CK_ULONG ctlen = sizeof(ct), backlen = sizeof(back), wlen = sizeof(w);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    h_random(pt, sizeof(pt));
    h_random(iv, sizeof(iv));
    gcm_mech(&p, &m, iv);

    CK_SESSION_HANDLE s = as_user(U_GEN);
    CK_OBJECT_HANDLE kek = must_find(s, L_KEK), hm = must_find(s, L_HMAC), dek, u, u2;
    CK_ATTRIBUTE ex[] = { { CKA_ENCRYPT, &h_true, 1 }, { CKA_EXTRACTABLE, &h_true, 1 } };
    RV_REQ(keygen(s, CKM_AES_KEY_GEN, "dek", CK_FALSE, ex, NELEM(ex), &dek), CKR_OK, "gen generates a DEK");
    RV_REQ(F->C_EncryptInit(s, &m, dek), CKR_OK, "gen C_EncryptInit with the DEK");
    RV_REQ(F->C_Encrypt(s, pt, sizeof(pt), ct, &ctlen), CKR_OK, "gen C_Encrypt");
    REQUIRE(ctlen == sizeof(pt) + 16, "GCM adds a 16-byte tag");
    RV_REQ(wrap_rv(s, kek, dek, w, &wlen), CKR_OK, "gen wraps the DEK under the KEK");
    RV_REQ(sign_rv(s, hm, ct, ctlen, mac), CKR_OK, "gen signs the ciphertext");
    RV_REQ(F->C_Logout(s), CKR_OK, "C_Logout(gen)");

    RV_REQ(h_login_rv(s, CKU_USER, U[U_DEC].pin), CKR_OK, "C_Login(dec)");
    kek = must_find(s, L_KEK);
    hm = must_find(s, L_HMAC);
    CK_MECHANISM hmac = { CKM_SHA256_HMAC, NULL, 0 };
    RV_EQ(F->C_VerifyInit(s, &hmac, hm), CKR_OK, "dec C_VerifyInit");
    RV_EQ(F->C_Verify(s, ct, ctlen, mac, sizeof(mac)), CKR_OK, "dec verifies gen's MAC");
    RV_REQ(unwrap_rv(s, kek, w, wlen, CK_FALSE, &u), CKR_OK, "dec unwraps the DEK into a session object");
    CK_BBOOL tok = CK_TRUE;
    RV_EQ(h_get_bool(s, u, CKA_TOKEN, &tok), CKR_OK, "read CKA_TOKEN of the unwrapped DEK");
    CHECK(tok == CK_FALSE, "the unwrapped DEK is a session object");
    RV_REQ(F->C_DecryptInit(s, &m, u), CKR_OK, "dec C_DecryptInit with the unwrapped DEK");
    RV_EQ(F->C_Decrypt(s, ct, ctlen, back, &backlen), CKR_OK, "dec decrypts gen's ciphertext");
    CHECK(backlen == sizeof(pt) && memcmp(back, pt, sizeof(pt)) == 0,
          "dec recovers gen's plaintext with the same DEK");
    RV_EQ(encrypt_rv(s, u), CKR_ACTION_PROHIBITED, "dec C_EncryptInit with its unwrapped DEK");
    RV_EQ(unwrap_rv(s, kek, w, wlen, CK_TRUE, &u2), CKR_ACTION_PROHIBITED,
          "dec C_UnwrapKey into a token object");
    CHECK(u2 == CK_INVALID_HANDLE, "the refused unwrap made no key");
    RV_EQ(F->C_DestroyObject(s, kek), CKR_ACTION_PROHIBITED, "dec C_DestroyObject of the token KEK");
    RV_EQ(F->C_DestroyObject(s, u), CKR_OK, "dec destroys its own unwrapped session key");
    RV_EQ(decrypt_init_rv(s, u), CKR_KEY_HANDLE_INVALID, "the destroyed session key is gone");
}

static void test_audit_role_sees_and_uses_no_private_key(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_user(U_AUD);
    static const char *const priv[] = { L_KEK, L_HMAC, L_XDEK, L_FAM, L_GENKEY };
    for (size_t i = 0; i < NELEM(priv); i++)
        CHECK(find_label(s, priv[i], NULL) == 0, "aud finds no private key by label");
    CK_OBJECT_HANDLE all[64];
    CK_ULONG n = 0;
    RV_REQ(F->C_FindObjectsInit(s, NULL, 0), CKR_OK, "C_FindObjectsInit(all)");
    RV_EQ(F->C_FindObjects(s, all, NELEM(all), &n), CKR_OK, "C_FindObjects(all)");
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");
    CHECK(n >= 2, "aud finds the public keys");
    for (CK_ULONG i = 0; i < n && i < NELEM(all); i++) {
        CK_BBOOL pv = CK_TRUE;
        RV_EQ(h_get_bool(s, all[i], CKA_PRIVATE, &pv), CKR_OK, "read CKA_PRIVATE of what aud finds");
        CHECK(pv == CK_FALSE, "everything aud finds is public");
    }
    CHECK(find_label(s, L_FAMPUB, NULL) == 0, "aud does not find a public key of another family");

    CK_ATTRIBUTE lab = { CKA_LABEL, NULL, 0 };
    RV_EQ(F->C_GetAttributeValue(s, stale_kek, &lab, 1), CKR_OBJECT_HANDLE_INVALID,
          "aud C_GetAttributeValue on a private key's handle");
    RV_IN2(encrypt_rv(s, stale_kek), CKR_ACTION_PROHIBITED, CKR_KEY_HANDLE_INVALID,
           "aud C_EncryptInit with a private key's handle");
    RV_IN2(decrypt_init_rv(s, stale_kek), CKR_ACTION_PROHIBITED, CKR_KEY_HANDLE_INVALID,
           "aud C_DecryptInit with a private key's handle");

    /* Public keys: the role, not visibility, refuses. */
    CK_OBJECT_HANDLE pub = must_find(s, L_PUB), pm = must_find(s, L_PUBHMAC), k;
    uint8_t data[] = "data", m[32], w[64] = { 0 };
    CK_ULONG wlen = sizeof(w);
    RV_EQ(encrypt_rv(s, pub), CKR_ACTION_PROHIBITED, "aud C_EncryptInit (public key)");
    RV_EQ(decrypt_init_rv(s, pub), CKR_ACTION_PROHIBITED, "aud C_DecryptInit (public key)");
    RV_EQ(sign_rv(s, pm, data, sizeof(data), m), CKR_ACTION_PROHIBITED, "aud C_SignInit (public key)");
    RV_EQ(verify_init_rv(s, pm), CKR_ACTION_PROHIBITED, "aud C_VerifyInit (public key)");
    RV_EQ(wrap_rv(s, pub, pub, w, &wlen), CKR_ACTION_PROHIBITED, "aud C_WrapKey (public key)");
    RV_EQ(unwrap_rv(s, pub, w, 40, CK_FALSE, &k), CKR_ACTION_PROHIBITED, "aud C_UnwrapKey (public key)");
    RV_EQ(digest_key_rv(s, pub), CKR_ACTION_PROHIBITED, "aud C_DigestKey (public key)");
    CK_ATTRIBUTE ed[] = { { CKA_ENCRYPT, &h_true, 1 } };
    RV_EQ(keygen(s, CKM_AES_KEY_GEN, "aud-token", CK_TRUE, ed, NELEM(ed), &k), CKR_ACTION_PROHIBITED,
          "aud C_GenerateKey of a token key");
    RV_EQ(keygen(s, CKM_AES_KEY_GEN, "aud-session", CK_FALSE, ed, NELEM(ed), &k), CKR_ACTION_PROHIBITED,
          "aud C_GenerateKey of a session key");
    RV_EQ(import_aes(s, CK_TRUE, &k), CKR_ACTION_PROHIBITED, "aud C_CreateObject of a token key");
    RV_EQ(copy_to_token_rv(s, pub), CKR_ACTION_PROHIBITED, "aud C_CopyObject of a token key");
    RV_EQ(relabel_rv(s, pub), CKR_ACTION_PROHIBITED, "aud C_SetAttributeValue on a token key");
    RV_EQ(F->C_DestroyObject(s, pub), CKR_ACTION_PROHIBITED, "aud C_DestroyObject of a token key");
    CHECK(find_label(s, L_PUB, NULL) == 1, "the public key survived aud's refused calls");
}

static void test_admin_manages_keys_but_never_uses_them(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    CK_OBJECT_HANDLE k;
    CK_ATTRIBUTE kek[] = { { CKA_PRIVATE, &h_true, 1 }, { CKA_WRAP, &h_true, 1 }, { CKA_UNWRAP, &h_true, 1 } };
    RV_REQ(keygen(s, CKM_AES_KEY_GEN, "adm-kek", CK_TRUE, kek, NELEM(kek), &k), CKR_OK,
           "the admin generates a private token KEK");
    CK_BBOOL b = CK_FALSE;
    RV_EQ(h_get_bool(s, k, CKA_TOKEN, &b), CKR_OK, "read CKA_TOKEN of the admin's KEK");
    CHECK(b == CK_TRUE, "the admin's KEK is a token object");
    b = CK_FALSE;
    RV_EQ(h_get_bool(s, k, CKA_PRIVATE, &b), CKR_OK, "read CKA_PRIVATE of the admin's KEK");
    CHECK(b == CK_TRUE, "the admin's KEK is private");

    /* A private key gen made: attributes yes, value never. */
    CK_OBJECT_HANDLE g = must_find(s, L_GENKEY);
    char label[32], id[16];
    CK_ATTRIBUTE a[] = { { CKA_LABEL, label, sizeof(label) }, { CKA_ID, id, sizeof(id) } };
    RV_EQ(F->C_GetAttributeValue(s, g, a, NELEM(a)), CKR_OK, "the admin reads label and id of gen's key");
    CHECK(a[0].ulValueLen == strlen(L_GENKEY) && memcmp(label, L_GENKEY, a[0].ulValueLen) == 0,
          "the admin sees the label of gen's key");
    CHECK(a[1].ulValueLen == 6 && memcmp(id, "gen-id", 6) == 0, "the admin sees the id of gen's key");
    uint8_t v[64];
    CK_ATTRIBUTE val = { CKA_VALUE, v, sizeof(v) };
    RV_EQ(F->C_GetAttributeValue(s, g, &val, 1), CKR_ATTRIBUTE_SENSITIVE, "the admin reads CKA_VALUE of gen's key");
    CHECK(val.ulValueLen == CK_UNAVAILABLE_INFORMATION, "CKA_VALUE length is CK_UNAVAILABLE_INFORMATION");

    CK_OBJECT_HANDLE kk = must_find(s, L_KEK), hm = must_find(s, L_HMAC), xd = must_find(s, L_XDEK);
    uint8_t data[] = "data", m[32], w[64];
    CK_ULONG wlen = sizeof(w);
    h_random(w, sizeof(w));
    RV_EQ(encrypt_rv(s, kk), CKR_ACTION_PROHIBITED, "the admin C_EncryptInit");
    RV_EQ(decrypt_init_rv(s, kk), CKR_ACTION_PROHIBITED, "the admin C_DecryptInit");
    RV_EQ(sign_rv(s, hm, data, sizeof(data), m), CKR_ACTION_PROHIBITED, "the admin C_SignInit");
    RV_EQ(verify_init_rv(s, hm), CKR_ACTION_PROHIBITED, "the admin C_VerifyInit");
    RV_EQ(wrap_rv(s, kk, xd, w, &wlen), CKR_ACTION_PROHIBITED, "the admin C_WrapKey");
    RV_EQ(unwrap_rv(s, kk, w, 40, CK_FALSE, &k), CKR_ACTION_PROHIBITED, "the admin C_UnwrapKey");
    RV_EQ(digest_key_rv(s, xd), CKR_ACTION_PROHIBITED, "the admin C_DigestKey");

    CK_OBJECT_HANDLE ak = must_find(s, "adm-kek");
    RV_EQ(F->C_DestroyObject(s, ak), CKR_OK, "the admin destroys a token key");
    CHECK(find_label(s, "adm-kek", NULL) == 0, "the destroyed token key is gone");
}

static void test_allowed_users_limit_a_key_family(void)
{
    fixture();
    CK_OBJECT_HANDLE fam, fampub, stale_fam;
    CK_SESSION_HANDLE s = as_user(U_GEN);
    CHECK(find_label(s, L_FAM, &fam) == 1, "gen finds its family's private key");
    CHECK(find_label(s, L_FAMPUB, &fampub) == 1, "gen finds its family's public key");
    RV_EQ(encrypt_rv(s, fam), CKR_OK, "gen encrypts with its family's key");
    RV_EQ(encrypt_rv(s, fampub), CKR_OK, "gen encrypts with its family's public key");
    stale_fam = fam;
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    RV_REQ(h_login_rv(s, CKU_USER, U[U_BOTH].pin), CKR_OK, "C_Login(both)");
    CHECK(find_label(s, L_FAM, &fam) == 1, "both finds the family's private key");
    RV_EQ(h_gcm_round_trip(s, fam, 1), CKR_OK, "both encrypts and decrypts with the family's key");
    /* The public key's handle is the one gen found: handles of public
     * objects outlive a login, so dec's refusal below is the family's. */
    RV_EQ(h_gcm_round_trip(s, fampub, 2), CKR_OK, "both uses the family's public key by gen's handle");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    RV_REQ(h_login_rv(s, CKU_USER, U[U_DEC].pin), CKR_OK, "C_Login(dec)");
    CHECK(find_label(s, L_FAM, NULL) == 0, "dec does not find the family's private key");
    CHECK(find_label(s, L_FAMPUB, NULL) == 0, "dec does not find the family's public key");
    RV_EQ(decrypt_init_rv(s, fampub), CKR_KEY_HANDLE_INVALID, "dec C_DecryptInit with the family's public key");
    RV_EQ(decrypt_init_rv(s, stale_fam), CKR_KEY_HANDLE_INVALID, "dec C_DecryptInit with the family's private key");
    CK_ATTRIBUTE lab = { CKA_LABEL, NULL, 0 };
    RV_EQ(F->C_GetAttributeValue(s, fampub, &lab, 1), CKR_OBJECT_HANDLE_INVALID,
          "dec C_GetAttributeValue on the family's public key");
    CK_OBJECT_HANDLE kek = must_find(s, L_KEK);
    RV_EQ(decrypt_init_rv(s, kek), CKR_OK, "dec still uses a key of no family");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");

    CHECK(find_label(s, L_FAMPUB, NULL) == 0, "nobody logged in: the family's public key is not found");
    CHECK(find_label(s, L_PUB, NULL) == 1, "nobody logged in: a public key of no family is found");

    h_login(s, CKU_SO, RT.so_pin);
    CHECK(find_label(s, L_FAM, &fam) == 1, "the admin finds the family's private key");
    CHECK(find_label(s, L_FAMPUB, NULL) == 1, "the admin finds the family's public key");
    char users[32];
    CK_ATTRIBUTE au = { CKA_CUSTOS_ALLOWED_USERS, users, sizeof(users) };
    RV_EQ(F->C_GetAttributeValue(s, fam, &au, 1), CKR_OK, "the admin reads CKA_CUSTOS_ALLOWED_USERS");
    CHECK(au.ulValueLen == strlen(FAMILY_USERS) && memcmp(users, FAMILY_USERS, au.ulValueLen) == 0,
          "CKA_CUSTOS_ALLOWED_USERS reads back as set");
    RV_EQ(encrypt_rv(s, fam), CKR_ACTION_PROHIBITED, "the admin sees but does not use the family's key");
}

static const h_case CASES[] = {
    H_CASE(test_vendor_interface_is_offered),
    H_CASE(test_admin_adds_users_with_each_role),
    H_CASE(test_user_add_refuses_bad_names),
    H_CASE(test_user_add_refuses_bad_roles),
    H_CASE(test_user_add_refuses_duplicate_name),
    H_CASE(test_user_add_refuses_pin_of_another_user),
    H_CASE(test_user_add_refuses_pin_length_out_of_range),
    H_CASE(test_user_management_needs_an_admin),
    H_CASE(test_user_management_in_read_only_session),
    H_CASE(test_user_list_two_call_rule_hides_counters),
    H_CASE(test_user_remove_and_its_refusals),
    H_CASE(test_user_set_roles_and_its_refusals),
    H_CASE(test_user_set_pin_and_its_refusals),
    H_CASE(test_user_disable_enable_and_their_refusals),
    H_CASE(test_login_pin_selects_the_user),
    H_CASE(test_login_user_names_the_user),
    H_CASE(test_login_user_wrong_name_or_type_is_pin_incorrect),
    H_CASE(test_login_user_failures_lock_that_user_until_admin_sets_pin),
    H_CASE(test_generate_role_has_write_path_not_read_path),
    H_CASE(test_decrypt_role_has_read_path_not_write_path),
    H_CASE(test_envelope_flow_from_generate_user_to_decrypt_user),
    H_CASE(test_audit_role_sees_and_uses_no_private_key),
    H_CASE(test_admin_manages_keys_but_never_uses_them),
    H_CASE(test_allowed_users_limit_a_key_family),
};

int t_roles_register(void)
{
    return h_add_suite("roles", CASES, NELEM(CASES));
}
