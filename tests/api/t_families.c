/* Key families, versions and rotation (docs/key-families.md) as a client
 * sees them: creating version 1 and its refusals, rotation by an admin, by
 * itself after CKA_CUSTOS_ROTATION_PERIOD and by C_CustosKeyRotateDue, a
 * rotation race between processes, re-wrapping without exposure, the state,
 * date and CKA_CUSTOS_NOT_AFTER rules, and the nonce discipline
 * (CKA_CUSTOS_ENCRYPT_COUNT, [policy] caller_iv). The suite keeps its own
 * tokens and users. */
#include <stdbool.h>
#include "harness.h"
#include "custos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Registered from test_api.c. */
int t_families_register(void);

#define FAM "tenant42"
#define MAX_OBJ 64

/* ---- the suite's token and users ------------------------------------------ */
enum { U_GEN, U_DEC, U_BOTH, U_COUNT };
static struct {
    const char *name;
    CK_ULONG roles;
    char pin[H_PIN_MAX];
} U[U_COUNT] = {
    [U_GEN] = { "fam-gen", CUSTOS_ROLE_GENERATE, "" },
    [U_DEC] = { "fam-dec", CUSTOS_ROLE_DECRYPT, "" },
    [U_BOTH] = { "fam-both", CUSTOS_ROLE_GENERATE | CUSTOS_ROLE_DECRYPT, "" },
};

static h_token FT;
static int fixture_tried, fixture_ready;
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

/* The token and its users, made once per run by the first test. */
static void fixture(void)
{
    if (fixture_ready)
        return;
    REQUIRE(!fixture_tried, "the families fixture failed in an earlier test");
    fixture_tried = 1;
    (void)vendor();
    h_new_token(&FT, "families", 1);
    CK_SESSION_HANDLE s = h_open(FT.slot, 1);
    h_login(s, CKU_SO, FT.so_pin);
    for (int i = 0; i < U_COUNT; i++) {
        char what[96];
        h_random_hex(U[i].pin, 16);
        snprintf(what, sizeof(what), "fixture: the admin adds user %s", U[i].name);
        RV_REQ(V->C_CustosUserAdd(s, (CK_UTF8CHAR_PTR)U[i].name, strlen(U[i].name), U[i].roles,
                                  (CK_UTF8CHAR_PTR)U[i].pin, strlen(U[i].pin)),
               CKR_OK, what);
    }
    RV_REQ(F->C_CloseSession(s), CKR_OK, "fixture: C_CloseSession");
    fixture_ready = 1;
}

static CK_SESSION_HANDLE as_admin_on(const h_token *t)
{
    CK_SESSION_HANDLE s = h_open(t->slot, 1);
    h_login(s, CKU_SO, t->so_pin);
    return s;
}

static CK_SESSION_HANDLE as_admin(void)
{
    return as_admin_on(&FT);
}

/* Log the session's process in as user u (the PIN selects the user). */
static void login_as(CK_SESSION_HANDLE s, int u)
{
    char what[96];
    snprintf(what, sizeof(what), "C_Login(CKU_USER) with the PIN of %s", U[u].name);
    RV_REQ(h_login_rv(s, CKU_USER, U[u].pin), CKR_OK, what);
}

static CK_SESSION_HANDLE as_user(int u)
{
    CK_SESSION_HANDLE s = h_open(FT.slot, 1);
    login_as(s, u);
    return s;
}

/* Log out and in again as someone else in the same session. */
static void switch_to(CK_SESSION_HANDLE s, int u)
{
    RV_REQ(F->C_Logout(s), CKR_OK, "C_Logout");
    if (u < 0) {
        h_login(s, CKU_SO, FT.so_pin);
        return;
    }
    login_as(s, u);
}

/* ---- finding versions --------------------------------------------------------- */
static CK_ULONG find(CK_SESSION_HANDLE s, CK_ATTRIBUTE *t, CK_ULONG n, CK_OBJECT_HANDLE *h,
                     CK_ULONG cap)
{
    CK_OBJECT_HANDLE buf[MAX_OBJ];
    CK_ULONG got = 0;
    RV_REQ(F->C_FindObjectsInit(s, t, n), CKR_OK, "C_FindObjectsInit");
    RV_EQ(F->C_FindObjects(s, buf, NELEM(buf), &got), CKR_OK, "C_FindObjects");
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");
    for (CK_ULONG i = 0; i < got && i < cap; i++)
        h[i] = buf[i];
    return got;
}

static CK_ULONG by_label(CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *h)
{
    CK_ATTRIBUTE t[] = { { CKA_LABEL, (void *)label, strlen(label) } };
    *h = CK_INVALID_HANDLE;
    return find(s, t, NELEM(t), h, 1);
}

/* The version with CKA_ID "<family>:v<n>"; fatal unless exactly one. */
static CK_OBJECT_HANDLE by_id(CK_SESSION_HANDLE s, const char *family, CK_ULONG v)
{
    char id[80], what[128];
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    snprintf(id, sizeof(id), "%s:v%lu", family, (unsigned long)v);
    CK_ATTRIBUTE t[] = { { CKA_ID, id, strlen(id) } };
    snprintf(what, sizeof(what), "exactly one object has CKA_ID \"%s\"", id);
    REQUIRE(find(s, t, NELEM(t), &h, 1) == 1, what);
    return h;
}

/* The current version, found by the family label as a client does. */
static CK_OBJECT_HANDLE current(CK_SESSION_HANDLE s, const char *family)
{
    CK_OBJECT_HANDLE h;
    char what[128];
    snprintf(what, sizeof(what), "exactly one object is labelled \"%s\"", family);
    REQUIRE(by_label(s, family, &h) == 1, what);
    return h;
}

static CK_ULONG family_objects(CK_SESSION_HANDLE s, const char *family, CK_OBJECT_HANDLE *h)
{
    CK_ATTRIBUTE t[] = { { CKA_CUSTOS_FAMILY, (void *)family, strlen(family) } };
    return find(s, t, NELEM(t), h, MAX_OBJ);
}

static CK_ULONG ulong_of(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t,
                         const char *what)
{
    CK_ULONG v = (CK_ULONG)-1;
    RV_EQ(h_get_ulong(s, o, t, &v), CKR_OK, what);
    return v;
}

/* Does the byte attribute read back as exactly str? */
static int bytes_are(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE o, CK_ATTRIBUTE_TYPE t, const char *str)
{
    char buf[128];
    CK_ATTRIBUTE a = { t, buf, sizeof(buf) };
    if (F->C_GetAttributeValue(s, o, &a, 1) != CKR_OK)
        return 0;
    return a.ulValueLen == strlen(str) && memcmp(buf, str, a.ulValueLen) == 0;
}

/* ---- making and rotating families -------------------------------------------- */

/* C_GenerateKey(CKM_AES_KEY_GEN) of an AES-256 family version: wrap,
 * unwrap, encrypt and decrypt allowed, plus extra attributes. */
static CK_RV make_family(CK_SESSION_HANDLE s, const char *name, size_t namelen,
                         const CK_ATTRIBUTE *extra, CK_ULONG nextra, CK_OBJECT_HANDLE *out)
{
    CK_ULONG len = 32;
    CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
    CK_ATTRIBUTE t[16] = {
        { CKA_VALUE_LEN, &len, sizeof(len) },
        { CKA_CUSTOS_FAMILY, (void *)name, namelen },
        { CKA_WRAP, &h_true, 1 },
        { CKA_UNWRAP, &h_true, 1 },
        { CKA_ENCRYPT, &h_true, 1 },
        { CKA_DECRYPT, &h_true, 1 },
    };
    CK_ULONG n = 6;
    REQUIRE(nextra <= NELEM(t) - n, "make_family: template fits");
    for (CK_ULONG i = 0; i < nextra; i++)
        t[n++] = extra[i];
    *out = CK_INVALID_HANDLE;
    return F->C_GenerateKey(s, &m, t, n, out);
}

static CK_OBJECT_HANDLE must_make_family(CK_SESSION_HANDLE s, const char *name, CK_ULONG period)
{
    CK_OBJECT_HANDLE h;
    CK_ATTRIBUTE p[] = { { CKA_CUSTOS_ROTATION_PERIOD, &period, sizeof(period) } };
    char what[96];
    snprintf(what, sizeof(what), "the admin creates family %s", name);
    RV_REQ(make_family(s, name, strlen(name), p, NELEM(p), &h), CKR_OK, what);
    return h;
}

static CK_RV rotate(CK_SESSION_HANDLE s, const char *family, CK_ULONG *v)
{
    *v = 0;
    return vendor()->C_CustosKeyRotate(s, (CK_UTF8CHAR_PTR)family, strlen(family), v);
}

/* Every version of the family: numbers 1..n once each, exactly one ACTIVE
 * (n, labelled with the family name), the others DECRYPT_ONLY and
 * relabelled "<family>:v<k>". Returns n. */
static CK_ULONG check_versions(CK_SESSION_HANDLE s, const char *family)
{
    CK_OBJECT_HANDLE h[MAX_OBJ];
    CK_ULONG n = family_objects(s, family, h);
    unsigned seen[MAX_OBJ + 1] = { 0 };
    CK_ULONG active = 0, bad = 0;
    REQUIRE(n > 0 && n <= MAX_OBJ, "the family has between 1 and 64 versions");
    for (CK_ULONG i = 0; i < n; i++) {
        CK_ULONG v = ulong_of(s, h[i], CKA_CUSTOS_VERSION, "read CKA_CUSTOS_VERSION");
        CK_ULONG st = ulong_of(s, h[i], CKA_CUSTOS_STATE, "read CKA_CUSTOS_STATE");
        char lab[80];
        if (v < 1 || v > n) {
            bad++;
            continue;
        }
        seen[v]++;
        if (st == CUSTOS_STATE_ACTIVE) {
            active++;
            CHECK(v == n, "the ACTIVE version is the newest");
            CHECK(bytes_are(s, h[i], CKA_LABEL, family), "the current version is labelled with the family name");
        } else {
            CHECK(st == CUSTOS_STATE_DECRYPT_ONLY, "an older version is DECRYPT_ONLY");
            snprintf(lab, sizeof(lab), "%s:v%lu", family, (unsigned long)v);
            CHECK(bytes_are(s, h[i], CKA_LABEL, lab), "an older version is labelled <family>:v<n>");
        }
    }
    CHECK(bad == 0, "version numbers run from 1 to the number of versions (no gap)");
    for (CK_ULONG v = 1; v <= n; v++)
        CHECK(seen[v] == 1, "each version number appears exactly once (no duplicate)");
    CHECK(active == 1, "exactly one version is ACTIVE");
    return n;
}

/* ---- cryptography ------------------------------------------------------------------ */
typedef struct msg {
    uint8_t pt[32];
    uint8_t iv[12];
    uint8_t ct[48];
    CK_ULONG ctlen;
} msg;

static uint8_t AAD[] = "families";

static void gcm(CK_GCM_PARAMS *p, CK_MECHANISM *m, uint8_t *iv)
{
    h_gcm(p, m, iv, 12, AAD, sizeof(AAD) - 1, 128);
}

/* A complete AES-GCM encryption of a fresh random message. */
static CK_RV seal(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, msg *x)
{
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    h_random(x->pt, sizeof(x->pt));
    h_random(x->iv, sizeof(x->iv));
    x->ctlen = sizeof(x->ct);
    gcm(&p, &m, x->iv);
    CK_RV rv = F->C_EncryptInit(s, &m, k);
    if (rv != CKR_OK)
        return rv;
    return F->C_Encrypt(s, x->pt, sizeof(x->pt), x->ct, &x->ctlen);
}

/* Decrypt and compare: CKR_GENERAL_ERROR when the plaintext differs. */
static CK_RV open_msg(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, const msg *x)
{
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t iv[12], out[48];
    CK_ULONG outlen = sizeof(out);
    memcpy(iv, x->iv, sizeof(iv));
    gcm(&p, &m, iv);
    CK_RV rv = F->C_DecryptInit(s, &m, k);
    if (rv != CKR_OK)
        return rv;
    rv = F->C_Decrypt(s, (CK_BYTE_PTR)x->ct, x->ctlen, out, &outlen);
    if (rv == CKR_OK && (outlen != sizeof(x->pt) || memcmp(out, x->pt, sizeof(x->pt)) != 0))
        rv = CKR_GENERAL_ERROR;
    return rv;
}

static CK_RV wrap(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek, CK_OBJECT_HANDLE k, uint8_t *w,
                  CK_ULONG *wlen)
{
    CK_MECHANISM m = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
    return F->C_WrapKey(s, &m, kek, k, w, wlen);
}

/* C_UnwrapKey into a sensitive AES session key for encrypt and decrypt. */
static CK_RV unwrap(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE kek, uint8_t *w, CK_ULONG wlen,
                    CK_BBOOL extractable, CK_OBJECT_HANDLE *out)
{
    CK_MECHANISM m = { CKM_AES_KEY_WRAP_KWP, NULL, 0 };
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) },         { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_TOKEN, &h_false, 1 },               { CKA_SENSITIVE, &h_true, 1 },
        { CKA_EXTRACTABLE, &extractable, 1 },     { CKA_ENCRYPT, &h_true, 1 },
        { CKA_DECRYPT, &h_true, 1 },
    };
    *out = CK_INVALID_HANDLE;
    return F->C_UnwrapKey(s, &m, kek, w, wlen, t, NELEM(t), out);
}

/* A session DEK the generate path may wrap. */
static CK_OBJECT_HANDLE dek(CK_SESSION_HANDLE s)
{
    CK_ATTRIBUTE x[] = { { CKA_EXTRACTABLE, &h_true, 1 } };
    return h_aes_key(s, 32, x, NELEM(x));
}

/* ---- dates -------------------------------------------------------------------------- */
static void ck_date(CK_DATE *d, int days_from_today)
{
    time_t t = time(NULL) + (time_t)days_from_today * 86400;
    struct tm tm;
    char b[9];
    gmtime_r(&t, &tm);
    strftime(b, sizeof(b), "%Y%m%d", &tm);
    memcpy(d->year, b, 4);
    memcpy(d->month, b + 4, 2);
    memcpy(d->day, b + 6, 2);
}

/* ==== creating a family =============================================================== */

static void test_admin_creates_family_as_version_1(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    CK_OBJECT_HANDLE k, found;
    CK_ULONG t0 = (CK_ULONG)time(NULL);
    RV_REQ(make_family(s, FAM, strlen(FAM), NULL, 0, &k), CKR_OK,
           "the admin C_GenerateKey with CKA_CUSTOS_FAMILY \"" FAM "\"");
    CK_ULONG t1 = (CK_ULONG)time(NULL);
    CHECK(ulong_of(s, k, CKA_CUSTOS_VERSION, "read CKA_CUSTOS_VERSION") == 1, "the new family is at version 1");
    CHECK(ulong_of(s, k, CKA_CUSTOS_STATE, "read CKA_CUSTOS_STATE") == CUSTOS_STATE_ACTIVE,
          "version 1 is ACTIVE");
    CK_ULONG created = ulong_of(s, k, CKA_CUSTOS_CREATED, "read CKA_CUSTOS_CREATED");
    CHECK(created + 1 >= t0 && created <= t1 + 1, "CKA_CUSTOS_CREATED is now");
    CHECK(bytes_are(s, k, CKA_ID, FAM ":v1"), "CKA_ID is \"tenant42:v1\"");
    CHECK(bytes_are(s, k, CKA_LABEL, FAM), "CKA_LABEL is \"tenant42\"");
    CHECK(bytes_are(s, k, CKA_CUSTOS_FAMILY, FAM), "CKA_CUSTOS_FAMILY reads back");
    CK_BBOOL b = CK_FALSE;
    RV_EQ(h_get_bool(s, k, CKA_TOKEN, &b), CKR_OK, "read CKA_TOKEN");
    CHECK(b == CK_TRUE, "a version is a token object");
    b = CK_FALSE;
    RV_EQ(h_get_bool(s, k, CKA_PRIVATE, &b), CKR_OK, "read CKA_PRIVATE");
    CHECK(b == CK_TRUE, "a version is private");
    b = CK_FALSE;
    RV_EQ(h_get_bool(s, k, CKA_SENSITIVE, &b), CKR_OK, "read CKA_SENSITIVE");
    CHECK(b == CK_TRUE, "a version is sensitive");
    b = CK_TRUE;
    RV_EQ(h_get_bool(s, k, CKA_EXTRACTABLE, &b), CKR_OK, "read CKA_EXTRACTABLE");
    CHECK(b == CK_FALSE, "a version is not extractable");
    b = CK_FALSE;
    RV_EQ(h_get_bool(s, k, CKA_NEVER_EXTRACTABLE, &b), CKR_OK, "read CKA_NEVER_EXTRACTABLE");
    CHECK(b == CK_TRUE, "a version was never extractable");
    CHECK(by_label(s, FAM, &found) == 1 && found == k, "a find by the family label returns version 1");

    RV_EQ(make_family(s, FAM, strlen(FAM), NULL, 0, &k), CKR_ACTION_PROHIBITED,
          "the admin creates family tenant42 again");
    CK_OBJECT_HANDLE all[MAX_OBJ];
    CHECK(family_objects(s, FAM, all) == 1, "the refused creation made no object");
}

static void test_non_admin_cannot_create_a_family(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_user(U_GEN);
    CK_OBJECT_HANDLE k, all[MAX_OBJ];
    RV_EQ(make_family(s, "gen-family", 10, NULL, 0, &k), CKR_ACTION_PROHIBITED,
          "a generate user C_GenerateKey with CKA_CUSTOS_FAMILY");
    CHECK(family_objects(s, "gen-family", all) == 0, "the refused creation made no object");
    CK_OBJECT_HANDLE plain = h_aes_key(s, 32, NULL, 0);
    CHECK(plain != CK_INVALID_HANDLE, "the same user may generate a key of no family");
}

static void test_family_name_rules(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    CK_OBJECT_HANDLE k, all[MAX_OBJ];
    char n48[49], n49[50];
    memset(n48, 'n', 48);
    n48[48] = '\0';
    memset(n49, 'm', 49);
    n49[49] = '\0';
    RV_EQ(make_family(s, "a:b", 3, NULL, 0, &k), CKR_ATTRIBUTE_VALUE_INVALID, "family name \"a:b\"");
    RV_EQ(make_family(s, n49, 49, NULL, 0, &k), CKR_ATTRIBUTE_VALUE_INVALID, "family name of 49 bytes");
    RV_EQ(make_family(s, "", 0, NULL, 0, &k), CKR_ATTRIBUTE_VALUE_INVALID, "empty family name");
    CHECK(family_objects(s, "a:b", all) == 0 && family_objects(s, n49, all) == 0,
          "refused names made no object");
    RV_EQ(make_family(s, n48, 48, NULL, 0, &k), CKR_OK, "family name of 48 bytes");
    char id[60];
    snprintf(id, sizeof(id), "%s:v1", n48);
    CHECK(bytes_are(s, k, CKA_ID, id), "a 48-byte family's CKA_ID is <name>:v1");
}

static void test_family_template_inconsistencies(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    CK_OBJECT_HANDLE k, all[MAX_OBJ];
    CK_ATTRIBUTE tok_false[] = { { CKA_TOKEN, &h_false, 1 } };
    CK_ATTRIBUTE extractable[] = { { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_ATTRIBUTE bad_id[] = { { CKA_ID, "incons:v2", 9 } };
    CK_ATTRIBUTE other_id[] = { { CKA_ID, "my-kek", 6 } };
    CK_ATTRIBUTE bad_label[] = { { CKA_LABEL, "incons-kek", 10 } };
    RV_EQ(make_family(s, "incons", 6, tok_false, 1, &k), CKR_TEMPLATE_INCONSISTENT, "CKA_TOKEN false");
    RV_EQ(make_family(s, "incons", 6, extractable, 1, &k), CKR_TEMPLATE_INCONSISTENT, "CKA_EXTRACTABLE true");
    RV_EQ(make_family(s, "incons", 6, bad_id, 1, &k), CKR_TEMPLATE_INCONSISTENT, "CKA_ID \"incons:v2\"");
    RV_EQ(make_family(s, "incons", 6, other_id, 1, &k), CKR_TEMPLATE_INCONSISTENT, "CKA_ID \"my-kek\"");
    RV_EQ(make_family(s, "incons", 6, bad_label, 1, &k), CKR_TEMPLATE_INCONSISTENT,
          "CKA_LABEL other than the family name");
    CHECK(family_objects(s, "incons", all) == 0, "the refused templates made no object");

    CK_ATTRIBUTE agree[] = { { CKA_TOKEN, &h_true, 1 },
                             { CKA_EXTRACTABLE, &h_false, 1 },
                             { CKA_ID, "incons:v1", 9 },
                             { CKA_LABEL, "incons", 6 } };
    RV_EQ(make_family(s, "incons", 6, agree, NELEM(agree), &k), CKR_OK,
          "a template whose CKA_TOKEN, CKA_EXTRACTABLE, CKA_ID and CKA_LABEL agree");
}

static void test_family_template_read_only_attributes(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    CK_OBJECT_HANDLE k, all[MAX_OBJ];
    CK_ULONG one = 1, active = CUSTOS_STATE_ACTIVE, now = (CK_ULONG)time(NULL), zero = 0;
    static const struct {
        CK_ATTRIBUTE_TYPE type;
        const char *what;
    } RO[] = {
        { CKA_CUSTOS_VERSION, "CKA_CUSTOS_VERSION in the template" },
        { CKA_CUSTOS_STATE, "CKA_CUSTOS_STATE in the template" },
        { CKA_CUSTOS_CREATED, "CKA_CUSTOS_CREATED in the template" },
        { CKA_CUSTOS_ENCRYPT_COUNT, "CKA_CUSTOS_ENCRYPT_COUNT in the template" },
    };
    CK_ULONG *vals[] = { &one, &active, &now, &zero };
    for (size_t i = 0; i < NELEM(RO); i++) {
        CK_ATTRIBUTE a[] = { { RO[i].type, vals[i], sizeof(CK_ULONG) } };
        RV_EQ(make_family(s, "readonly", 8, a, 1, &k), CKR_ATTRIBUTE_READ_ONLY, RO[i].what);
    }
    CHECK(family_objects(s, "readonly", all) == 0, "the refused templates made no object");
}

/* "refuses a family that exists": a family whose version 1 an admin
 * destroyed after rotating still exists (version 2 is current). */
static void test_family_exists_after_version_1_is_destroyed(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    CK_OBJECT_HANDLE k, all[MAX_OBJ];
    CK_ULONG v;
    (void)must_make_family(s, "phoenix", 0);
    RV_REQ(rotate(s, "phoenix", &v), CKR_OK, "rotate phoenix");
    RV_REQ(F->C_DestroyObject(s, by_id(s, "phoenix", 1)), CKR_OK, "the admin destroys phoenix:v1");
    RV_EQ(make_family(s, "phoenix", 7, NULL, 0, &k), CKR_ACTION_PROHIBITED,
          "the admin creates family phoenix while phoenix:v2 is current");
    CHECK(family_objects(s, "phoenix", all) == 1, "phoenix still has one version only");
    CHECK(by_label(s, "phoenix", &k) == 1, "exactly one object is labelled phoenix");
}

/* ==== rotation ==================================================================== */

static void test_admin_rotation_versions_labels_and_rewrap(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    CK_OBJECT_HANDLE k;
    if (by_label(s, FAM, &k) == 0)
        RV_REQ(make_family(s, FAM, strlen(FAM), NULL, 0, &k), CKR_OK, "create tenant42");
    REQUIRE(ulong_of(s, current(s, FAM), CKA_CUSTOS_VERSION, "read the version") == 1,
            "tenant42 is at version 1 before rotation");

    /* Before rotation: the generate user wraps a DEK and encrypts with it. */
    msg data, direct;
    uint8_t w1[64];
    CK_ULONG w1len = sizeof(w1);
    switch_to(s, U_GEN);
    CK_OBJECT_HANDLE v1 = current(s, FAM), d = dek(s);
    RV_REQ(seal(s, d, &data), CKR_OK, "gen encrypts data with the DEK");
    RV_REQ(wrap(s, v1, d, w1, &w1len), CKR_OK, "gen wraps the DEK under tenant42:v1 (KWP)");
    RV_REQ(seal(s, v1, &direct), CKR_OK, "gen encrypts with tenant42:v1 while it is current");

    switch_to(s, -1);
    CK_ULONG t0 = (CK_ULONG)time(NULL);
    for (CK_ULONG want = 2; want <= 4; want++) {
        CK_ULONG v = 0;
        char what[64];
        snprintf(what, sizeof(what), "C_CustosKeyRotate(tenant42) to version %lu", (unsigned long)want);
        RV_REQ(rotate(s, FAM, &v), CKR_OK, what);
        CHECK(v == want, "C_CustosKeyRotate reports the new current version");
    }
    CK_ULONG t1 = (CK_ULONG)time(NULL);
    CHECK(check_versions(s, FAM) == 4, "tenant42 has four versions");
    CK_OBJECT_HANDLE cur = current(s, FAM);
    CHECK(ulong_of(s, cur, CKA_CUSTOS_VERSION, "read the current version") == 4,
          "the object labelled tenant42 is version 4");
    CHECK(bytes_are(s, cur, CKA_ID, FAM ":v4"), "the current version's CKA_ID is tenant42:v4");
    for (CK_ULONG v = 1; v <= 3; v++) {
        char lab[32];
        CK_OBJECT_HANDLE o = by_id(s, FAM, v);
        snprintf(lab, sizeof(lab), FAM ":v%lu", (unsigned long)v);
        CHECK(bytes_are(s, o, CKA_LABEL, lab), "an old version is relabelled tenant42:vN");
        CHECK(ulong_of(s, o, CKA_CUSTOS_STATE, "read the old state") == CUSTOS_STATE_DECRYPT_ONLY,
              "an old version is DECRYPT_ONLY");
        CK_ULONG rot = ulong_of(s, o, CKA_CUSTOS_ROTATED, "read CKA_CUSTOS_ROTATED of an old version");
        CHECK(rot + 1 >= t0 && rot <= t1 + 1, "CKA_CUSTOS_ROTATED is the time of the rotation");
        CHECK(ulong_of(s, o, CKA_CUSTOS_VERSION, "read the old version") == v,
              "CKA_ID tenant42:vN finds version N");
    }

    /* The read path still opens what v1 protected. */
    switch_to(s, U_DEC);
    CK_OBJECT_HANDLE u;
    v1 = by_id(s, FAM, 1);
    RV_REQ(unwrap(s, v1, w1, w1len, CK_FALSE, &u), CKR_OK, "dec unwraps the DEK under tenant42:v1 after rotation");
    RV_EQ(open_msg(s, u, &data), CKR_OK, "dec decrypts the data with the unwrapped DEK");
    RV_EQ(open_msg(s, v1, &direct), CKR_OK, "dec decrypts what v1 encrypted directly");

    /* The write path may no longer use v1, only the current version. */
    switch_to(s, U_GEN);
    v1 = by_id(s, FAM, 1);
    CK_OBJECT_HANDLE v4 = current(s, FAM), d2 = dek(s);
    uint8_t w[64];
    CK_ULONG wlen = sizeof(w);
    msg x;
    RV_EQ(wrap(s, v1, d2, w, &wlen), CKR_KEY_FUNCTION_NOT_PERMITTED, "gen C_WrapKey under DECRYPT_ONLY tenant42:v1");
    RV_EQ(seal(s, v1, &x), CKR_KEY_FUNCTION_NOT_PERMITTED, "gen C_EncryptInit with DECRYPT_ONLY tenant42:v1");
    wlen = sizeof(w);
    RV_EQ(wrap(s, v4, d2, w, &wlen), CKR_OK, "gen C_WrapKey under the current tenant42:v4");
    RV_EQ(seal(s, v4, &x), CKR_OK, "gen C_EncryptInit with the current tenant42:v4");

    /* Re-wrap without exposure, in one session of a user with both paths. */
    switch_to(s, U_BOTH);
    v1 = by_id(s, FAM, 1);
    v4 = current(s, FAM);
    CK_OBJECT_HANDLE k1, k4;
    uint8_t w4[64];
    CK_ULONG w4len = sizeof(w4);
    RV_REQ(unwrap(s, v1, w1, w1len, CK_TRUE, &k1), CKR_OK,
           "unwrap under v1 into a sensitive, extractable session object");
    RV_REQ(wrap(s, v4, k1, w4, &w4len), CKR_OK, "wrap it again under the current v4");
    RV_REQ(unwrap(s, v4, w4, w4len, CK_FALSE, &k4), CKR_OK, "the new blob unwraps under v4");
    msg y;
    RV_REQ(seal(s, k4, &y), CKR_OK, "encrypt with the key unwrapped under v4");
    RV_EQ(open_msg(s, k1, &y), CKR_OK, "the key unwrapped under v1 decrypts it: the same key");
    RV_REQ(seal(s, k1, &y), CKR_OK, "encrypt with the key unwrapped under v1");
    RV_EQ(open_msg(s, k4, &y), CKR_OK, "the key unwrapped under v4 decrypts it: the same key");
    RV_EQ(open_msg(s, k4, &data), CKR_OK, "the re-wrapped DEK decrypts the original data");
    RV_EQ(F->C_DestroyObject(s, k1), CKR_OK, "destroy the intermediate session object");
    CHECK(w4len != w1len || memcmp(w1, w4, w1len) != 0, "the blob under v4 differs from the blob under v1");
    CK_OBJECT_HANDLE bad;
    RV_EQ(unwrap(s, v1, w4, w4len, CK_FALSE, &bad), CKR_WRAPPED_KEY_INVALID,
          "the blob under v4 does not unwrap under v1");
}

static void test_rotate_refusals(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    CK_ULONG v;
    RV_EQ(rotate(s, "no-such-family", &v), CKR_ARGUMENTS_BAD, "C_CustosKeyRotate of an unknown family");
    (void)must_make_family(s, "rot-refuse", 0);
    switch_to(s, U_GEN);
    RV_EQ(rotate(s, "rot-refuse", &v), CKR_USER_NOT_LOGGED_IN, "C_CustosKeyRotate by a generate user");
    switch_to(s, U_DEC);
    RV_EQ(rotate(s, "rot-refuse", &v), CKR_USER_NOT_LOGGED_IN, "C_CustosKeyRotate by a decrypt user");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(rotate(s, "rot-refuse", &v), CKR_USER_NOT_LOGGED_IN, "C_CustosKeyRotate with nobody logged in");
    CK_ULONG n = 0;
    RV_EQ(vendor()->C_CustosKeyRotateDue(s, &n), CKR_USER_NOT_LOGGED_IN,
          "C_CustosKeyRotateDue with nobody logged in");
    h_login(s, CKU_SO, FT.so_pin);
    CHECK(check_versions(s, "rot-refuse") == 1, "the refused rotations made no version");
}

/* ---- the race ------------------------------------------------------------------------ */
#define RACERS 4
#define RACE_ROUNDS 3

struct race_result {
    CK_RV init, open, login, rotate;
    CK_ULONG version;
};

/* In a forked child: no CUnit; results go to the parent through a pipe. */
static void race_child(int ready_w, int go_r, int res_w, const char *family, CK_ULONG seen)
{
    struct race_result r = { CKR_GENERAL_ERROR, CKR_GENERAL_ERROR, CKR_GENERAL_ERROR,
                             CKR_GENERAL_ERROR, 0 };
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    char c = 1;
    alarm(300);
    r.init = F->C_Initialize(NULL);
    if (r.init == CKR_OK)
        r.open = F->C_OpenSession(FT.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
    if (r.open == CKR_OK)
        r.login = h_login_rv(s, CKU_SO, FT.so_pin);
    if (write(ready_w, &c, 1) != 1)
        _exit(2);
    (void)read(go_r, &c, 1); /* returns at EOF: the parent closed the barrier */
    /* seen != 0: each racer rotates from the version it saw
     * (compare-and-swap, pkcs11/custos.h): exactly one of them may win.
     * seen == 0: the plain "rotate now" call. */
    r.version = seen;
    if (r.login == CKR_OK)
        r.rotate = V->C_CustosKeyRotate(s, (CK_UTF8CHAR_PTR)family, strlen(family), &r.version);
    (void)F->C_Finalize(NULL);
    _exit(write(res_w, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 3);
}

/* One race: RACERS children rotate the family at once from version
 * `before`, each passing *pulNewVersion = seen on entry. */
static void race_round(const char *family, CK_ULONG before, CK_ULONG seen, bool exact)
{
    int ready[2], go[2], res[2];
    pid_t pid[RACERS];
    REQUIRE(pipe(ready) == 0 && pipe(go) == 0 && pipe(res) == 0, "pipes for the race");
    for (int i = 0; i < RACERS; i++) {
        pid[i] = fork();
        REQUIRE(pid[i] >= 0, "fork");
        if (pid[i] == 0) {
            close(go[1]);
            close(ready[0]);
            close(res[0]);
            race_child(ready[1], go[0], res[1], family, seen);
        }
    }
    close(ready[1]);
    close(go[0]);
    close(res[1]);
    char c;
    int readied = 0;
    for (int i = 0; i < RACERS; i++)
        readied += read(ready[0], &c, 1) == 1;
    close(go[1]); /* all children leave the barrier at once */
    for (int i = 0; i < RACERS; i++) {
        int st = 0;
        REQUIRE(waitpid(pid[i], &st, 0) == pid[i], "waitpid");
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "a racing child exited normally");
    }
    CHECK(readied == RACERS, "every child reached the barrier");
    for (int i = 0; i < RACERS; i++) {
        struct race_result r;
        REQUIRE(read(res[0], &r, sizeof(r)) == (ssize_t)sizeof(r), "a racer's result");
        RV_EQ(r.init, CKR_OK, "racer C_Initialize after fork");
        RV_EQ(r.login, CKR_OK, "racer C_Login(CKU_SO)");
        RV_EQ(r.rotate, CKR_OK, "racer C_CustosKeyRotate");
        if (!exact)
            continue;
        if (r.version != before + 1)
            fprintf(stderr, "\n  [families] racer reported version %lu, expected %lu\n",
                    (unsigned long)r.version, (unsigned long)(before + 1));
        CHECK(r.version == before + 1, "every racer reports the one new version");
    }
    close(ready[0]);
    close(res[0]);
}

static void race_round_plain(const char *family) { race_round(family, 1, 0, false); }

static void race_rounds(const char *family, int cas)
{
    CK_SESSION_HANDLE s = as_admin();
    (void)must_make_family(s, family, 0);
    RV_REQ(F->C_CloseSession(s), CKR_OK, "close the parent's session before forking");
    for (CK_ULONG round = 1; round <= RACE_ROUNDS; round++) {
        race_round(family, round, cas ? round : 0, true);
        s = as_admin();
        CK_ULONG n = check_versions(s, family);
        if (n != round + 1)
            fprintf(stderr, "\n  [families] %s round %lu: %lu versions, expected %lu\n", family,
                    (unsigned long)round, (unsigned long)n, (unsigned long)(round + 1));
        CHECK(n == round + 1, "four racing rotations add exactly one version");
        RV_REQ(F->C_CloseSession(s), CKR_OK, "C_CloseSession");
    }
}

/* Racers that pass the version they saw (pkcs11/custos.h). */
static void test_rotation_race_makes_exactly_one_version(void)
{
    fixture();
    race_rounds("race", 1);
}

/* Plain rotations (*pulNewVersion 0) racing: each call rotates once from
 * whatever is current when it commits, so racers may add several versions;
 * the family stays consistent (numbers 1..n without gap or duplicate, exactly
 * one ACTIVE), which check_versions asserts. Exactly one new version is the
 * promise of the compare-and-swap form and of rotation by period
 * (docs/key-families.md). */
static void test_rotation_race_without_seen_version_stays_consistent(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    (void)must_make_family(s, "race-plain", 0);
    RV_REQ(F->C_CloseSession(s), CKR_OK, "close the parent's session before forking");
    race_round_plain("race-plain");
    s = as_admin();
    CK_ULONG n = check_versions(s, "race-plain");
    CHECK(n >= 2 && n <= 1 + RACERS, "plain racing rotations add between 1 and 4 versions");
    RV_REQ(F->C_CloseSession(s), CKR_OK, "C_CloseSession");
}

static void test_rotate_with_seen_version_is_compare_and_swap(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    (void)must_make_family(s, "cas", 0);
    CK_ULONG v = 1;
    RV_EQ(vendor()->C_CustosKeyRotate(s, (CK_UTF8CHAR_PTR) "cas", 3, &v), CKR_OK,
          "rotate cas having seen version 1 (current)");
    CHECK(v == 2 && check_versions(s, "cas") == 2, "the rotation made version 2");
    v = 1;
    RV_EQ(vendor()->C_CustosKeyRotate(s, (CK_UTF8CHAR_PTR) "cas", 3, &v), CKR_OK,
          "rotate cas having seen version 1 (stale)");
    CHECK(v == 2, "a stale rotation reports the current version 2");
    CHECK(check_versions(s, "cas") == 2, "a stale rotation makes no version");
    v = 2;
    RV_EQ(vendor()->C_CustosKeyRotate(s, (CK_UTF8CHAR_PTR) "cas", 3, &v), CKR_OK,
          "rotate cas having seen version 2 (current)");
    CHECK(v == 3 && check_versions(s, "cas") == 3, "the rotation made version 3");
    RV_EQ(vendor()->C_CustosKeyRotate(s, (CK_UTF8CHAR_PTR) "cas", 3, NULL), CKR_OK,
          "rotate cas with pulNewVersion NULL");
    CHECK(check_versions(s, "cas") == 4, "a rotation without a version pointer made version 4");
}

/* ---- rotation by itself --------------------------------------------------------------- */

static void test_rotation_period_rotates_on_first_protecting_use(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    (void)must_make_family(s, "auto-enc", 1);
    (void)must_make_family(s, "auto-wrap", 1);
    (void)must_make_family(s, "auto-ro", 1);
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    sleep(2);

    /* Decryption is not a protecting use: no rotation. */
    login_as(s, U_DEC);
    msg forged;
    memset(&forged, 0, sizeof(forged));
    forged.ctlen = sizeof(forged.ct);
    RV_EQ(open_msg(s, current(s, "auto-enc"), &forged), CKR_ENCRYPTED_DATA_INVALID,
          "dec decrypts a forged ciphertext with a due version");
    CK_OBJECT_HANDLE all[MAX_OBJ];
    CHECK(family_objects(s, "auto-enc", all) == 1, "a decryption does not rotate a due family");

    switch_to(s, U_GEN);
    CK_OBJECT_HANDLE v1 = current(s, "auto-enc");
    msg m1;
    RV_EQ(seal(s, v1, &m1), CKR_OK, "gen's first encryption with a due version succeeds");
    CHECK(check_versions(s, "auto-enc") == 2, "the encryption rotated the family: version 2 exists");
    v1 = by_id(s, "auto-enc", 1);
    CHECK(ulong_of(s, v1, CKA_CUSTOS_STATE, "read v1 state") == CUSTOS_STATE_DECRYPT_ONLY,
          "the version that was used is now DECRYPT_ONLY");
    CHECK(ulong_of(s, current(s, "auto-enc"), CKA_CUSTOS_VERSION, "read current version") == 2,
          "a find by the family label returns version 2");
    msg m2;
    RV_EQ(seal(s, v1, &m2), CKR_KEY_FUNCTION_NOT_PERMITTED, "gen encrypts with the rotated-out version 1");

    CK_OBJECT_HANDLE w1 = current(s, "auto-wrap"), d = dek(s);
    uint8_t w[64];
    CK_ULONG wlen = sizeof(w);
    RV_EQ(wrap(s, w1, d, w, &wlen), CKR_OK, "gen's first wrap with a due version succeeds");
    CHECK(check_versions(s, "auto-wrap") == 2, "the wrap rotated the family: version 2 exists");

    /* The same in a read-only session: an encryption does not write. */
    CK_SESSION_HANDLE ro = h_open(FT.slot, 0);
    msg m3;
    RV_EQ(seal(ro, current(ro, "auto-ro"), &m3), CKR_OK,
          "gen's first encryption with a due version in an R/O session succeeds");
    CHECK(family_objects(ro, "auto-ro", all) == 2, "the R/O session's encryption rotated the family");

    /* That operation used version 1: it decrypts with version 1. */
    switch_to(s, U_DEC);
    RV_EQ(open_msg(s, by_id(s, "auto-enc", 1), &m1), CKR_OK,
          "the rotating encryption was made with the version the caller named");
}

static void test_rotate_due_rotates_due_families_and_counts(void)
{
    fixture();
    h_token dt;
    h_new_token(&dt, "fam-due", 1);
    CK_SESSION_HANDLE s = as_admin_on(&dt);
    (void)must_make_family(s, "due-a", 2);
    (void)must_make_family(s, "due-b", 2);
    (void)must_make_family(s, "due-never", 0);
    (void)must_make_family(s, "due-later", 3600);
    sleep(3);
    CK_ULONG n = 99;
    RV_REQ(vendor()->C_CustosKeyRotateDue(s, &n), CKR_OK, "C_CustosKeyRotateDue");
    CHECK(n == 2, "C_CustosKeyRotateDue reports two rotated families");
    CHECK(check_versions(s, "due-a") == 2, "due-a was rotated");
    CHECK(check_versions(s, "due-b") == 2, "due-b was rotated");
    CHECK(check_versions(s, "due-never") == 1, "a family with period 0 was not rotated");
    CHECK(check_versions(s, "due-later") == 1, "a family not yet due was not rotated");
    n = 99;
    RV_EQ(vendor()->C_CustosKeyRotateDue(s, &n), CKR_OK, "C_CustosKeyRotateDue again at once");
    CHECK(n == 0, "nothing is due right after rotation");
    CHECK(check_versions(s, "due-a") == 2, "due-a's new version was not rotated again");

    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    h_login(s, CKU_USER, dt.user_pin);
    RV_EQ(vendor()->C_CustosKeyRotateDue(s, &n), CKR_USER_NOT_LOGGED_IN,
          "C_CustosKeyRotateDue by a non-admin");
}

/* ==== states, dates and expiry ============================================================ */

static CK_RV set_state(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k, CK_ULONG state)
{
    CK_ATTRIBUTE a[] = { { CKA_CUSTOS_STATE, &state, sizeof(state) } };
    return F->C_SetAttributeValue(s, k, a, NELEM(a));
}

static void test_states_set_by_admin(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    (void)must_make_family(s, "susp", 0);
    switch_to(s, U_BOTH);
    CK_OBJECT_HANDLE k = current(s, "susp"), d = dek(s), u;
    msg m, x;
    uint8_t w[64], w2[64];
    CK_ULONG wlen = sizeof(w), w2len = sizeof(w2);
    RV_REQ(seal(s, k, &m), CKR_OK, "encrypt with the ACTIVE version");
    RV_REQ(wrap(s, k, d, w, &wlen), CKR_OK, "wrap with the ACTIVE version");

    switch_to(s, -1);
    RV_REQ(set_state(s, current(s, "susp"), CUSTOS_STATE_SUSPENDED), CKR_OK, "the admin sets SUSPENDED");
    switch_to(s, U_BOTH);
    k = current(s, "susp");
    RV_EQ(seal(s, k, &x), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_EncryptInit with a SUSPENDED key");
    RV_EQ(open_msg(s, k, &m), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_DecryptInit with a SUSPENDED key");
    RV_EQ(wrap(s, k, d, w2, &w2len), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_WrapKey with a SUSPENDED key");
    RV_EQ(unwrap(s, k, w, wlen, CK_FALSE, &u), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_UnwrapKey with a SUSPENDED key");

    switch_to(s, -1);
    RV_REQ(set_state(s, current(s, "susp"), CUSTOS_STATE_PENDING_DESTRUCTION), CKR_OK,
           "the admin sets PENDING_DESTRUCTION");
    switch_to(s, U_BOTH);
    k = current(s, "susp");
    RV_EQ(seal(s, k, &x), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_EncryptInit with a PENDING_DESTRUCTION key");
    RV_EQ(open_msg(s, k, &m), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_DecryptInit with a PENDING_DESTRUCTION key");

    switch_to(s, -1);
    RV_REQ(set_state(s, current(s, "susp"), CUSTOS_STATE_ACTIVE), CKR_OK, "the admin sets ACTIVE again");
    switch_to(s, U_BOTH);
    k = current(s, "susp");
    RV_EQ(seal(s, k, &x), CKR_OK, "encrypt works again once ACTIVE");
    RV_EQ(open_msg(s, k, &m), CKR_OK, "decrypt of the earlier ciphertext works again once ACTIVE");
    RV_EQ(unwrap(s, k, w, wlen, CK_FALSE, &u), CKR_OK, "unwrap works again once ACTIVE");

    switch_to(s, U_GEN);
    RV_EQ(set_state(s, current(s, "susp"), CUSTOS_STATE_SUSPENDED), CKR_ACTION_PROHIBITED,
          "a generate user sets CKA_CUSTOS_STATE");
    switch_to(s, U_DEC);
    RV_EQ(set_state(s, current(s, "susp"), CUSTOS_STATE_SUSPENDED), CKR_ACTION_PROHIBITED,
          "a decrypt user sets CKA_CUSTOS_STATE");
    CHECK(ulong_of(s, current(s, "susp"), CKA_CUSTOS_STATE, "read the state") == CUSTOS_STATE_ACTIVE,
          "the refused changes left the key ACTIVE");

    /* No such state: the standard's code for an invalid value (sec. 5.7.6). */
    switch_to(s, -1);
    RV_EQ(set_state(s, current(s, "susp"), 99), CKR_ATTRIBUTE_VALUE_INVALID,
          "the admin sets CKA_CUSTOS_STATE to 99 (no such state)");
    RV_EQ(set_state(s, current(s, "susp"), 0), CKR_ATTRIBUTE_VALUE_INVALID,
          "the admin sets CKA_CUSTOS_STATE to 0 (no such state)");
}

static void test_start_date_tomorrow_forbids_any_use(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_user(U_BOTH);
    CK_DATE tomorrow, today;
    ck_date(&tomorrow, 1);
    ck_date(&today, 0);
    uint8_t v[32];
    h_random(v, sizeof(v));
    CK_ATTRIBUTE ed[] = { { CKA_ENCRYPT, &h_true, 1 }, { CKA_DECRYPT, &h_true, 1 } };
    CK_OBJECT_HANDLE plain = h_import_key(s, CKK_AES, v, sizeof(v), ed, NELEM(ed));
    CK_ATTRIBUTE late[] = { { CKA_ENCRYPT, &h_true, 1 },
                            { CKA_DECRYPT, &h_true, 1 },
                            { CKA_START_DATE, &tomorrow, sizeof(tomorrow) } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, v, sizeof(v), late, NELEM(late));
    msg m, x;
    RV_REQ(seal(s, plain, &m), CKR_OK, "encrypt with the same key value without dates");
    RV_EQ(seal(s, k, &x), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_EncryptInit before CKA_START_DATE");
    RV_EQ(open_msg(s, k, &m), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_DecryptInit before CKA_START_DATE");
    CK_ATTRIBUTE st[] = { { CKA_START_DATE, &today, sizeof(today) } };
    RV_REQ(F->C_SetAttributeValue(s, k, st, NELEM(st)), CKR_OK, "set CKA_START_DATE to today");
    RV_EQ(open_msg(s, k, &m), CKR_OK, "decrypt from CKA_START_DATE on");
    RV_EQ(seal(s, k, &x), CKR_OK, "encrypt from CKA_START_DATE on");
}

static void test_end_date_yesterday_forbids_encrypt_not_decrypt(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_user(U_BOTH);
    CK_DATE yesterday, today;
    ck_date(&yesterday, -1);
    ck_date(&today, 0);
    CK_ATTRIBUTE ed[] = { { CKA_ENCRYPT, &h_true, 1 }, { CKA_DECRYPT, &h_true, 1 } };
    uint8_t v[32];
    h_random(v, sizeof(v));
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, v, sizeof(v), ed, NELEM(ed));
    msg m, x;
    RV_REQ(seal(s, k, &m), CKR_OK, "encrypt before the end date is set");
    CK_ATTRIBUTE end[] = { { CKA_END_DATE, &yesterday, sizeof(yesterday) } };
    RV_REQ(F->C_SetAttributeValue(s, k, end, NELEM(end)), CKR_OK, "set CKA_END_DATE to yesterday");
    RV_EQ(seal(s, k, &x), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_EncryptInit after CKA_END_DATE");
    RV_EQ(open_msg(s, k, &m), CKR_OK, "decrypt of earlier ciphertext after CKA_END_DATE");
    end[0].pValue = &today;
    RV_REQ(F->C_SetAttributeValue(s, k, end, NELEM(end)), CKR_OK, "set CKA_END_DATE to today");
    RV_EQ(seal(s, k, &x), CKR_OK, "encrypt on the end date itself");

    /* The same for wrapping with a KEK whose end date passed. */
    CK_ATTRIBUTE kek_t[] = { { CKA_WRAP, &h_true, 1 },
                             { CKA_UNWRAP, &h_true, 1 },
                             { CKA_END_DATE, &yesterday, sizeof(yesterday) } };
    CK_OBJECT_HANDLE kek = h_aes_key(s, 32, kek_t, NELEM(kek_t)), d = dek(s);
    uint8_t w[64];
    CK_ULONG wlen = sizeof(w);
    RV_EQ(wrap(s, kek, d, w, &wlen), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_WrapKey after CKA_END_DATE");
}

static void test_not_after_in_the_past_forbids_encrypt(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_admin();
    (void)must_make_family(s, "expiring", 0);
    switch_to(s, U_BOTH);
    CK_OBJECT_HANDLE k = current(s, "expiring"), d = dek(s);
    msg m, x;
    uint8_t w[64], w2[64];
    CK_ULONG wlen = sizeof(w), w2len = sizeof(w2);
    RV_REQ(seal(s, k, &m), CKR_OK, "encrypt before CKA_CUSTOS_NOT_AFTER is set");
    RV_REQ(wrap(s, k, d, w, &wlen), CKR_OK, "wrap before CKA_CUSTOS_NOT_AFTER is set");

    switch_to(s, -1);
    CK_ULONG past = (CK_ULONG)time(NULL) - 60;
    CK_ATTRIBUTE na[] = { { CKA_CUSTOS_NOT_AFTER, &past, sizeof(past) } };
    RV_REQ(F->C_SetAttributeValue(s, current(s, "expiring"), na, NELEM(na)), CKR_OK,
           "the admin sets CKA_CUSTOS_NOT_AFTER a minute ago");
    switch_to(s, U_BOTH);
    k = current(s, "expiring");
    CK_OBJECT_HANDLE u;
    RV_EQ(seal(s, k, &x), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_EncryptInit after CKA_CUSTOS_NOT_AFTER");
    RV_EQ(wrap(s, k, d, w2, &w2len), CKR_KEY_FUNCTION_NOT_PERMITTED, "C_WrapKey after CKA_CUSTOS_NOT_AFTER");
    RV_EQ(open_msg(s, k, &m), CKR_OK, "decrypt after CKA_CUSTOS_NOT_AFTER");
    RV_EQ(unwrap(s, k, w, wlen, CK_FALSE, &u), CKR_OK, "unwrap after CKA_CUSTOS_NOT_AFTER");

    switch_to(s, -1);
    CK_ULONG future = (CK_ULONG)time(NULL) + 3600;
    na[0].pValue = &future;
    RV_REQ(F->C_SetAttributeValue(s, current(s, "expiring"), na, NELEM(na)), CKR_OK,
           "the admin moves CKA_CUSTOS_NOT_AFTER an hour ahead");
    switch_to(s, U_BOTH);
    RV_EQ(seal(s, current(s, "expiring"), &x), CKR_OK, "encrypt before CKA_CUSTOS_NOT_AFTER");
}

/* ==== nonce discipline =================================================================== */

static CK_ULONG enc_count(CK_SESSION_HANDLE s, CK_OBJECT_HANDLE k)
{
    return ulong_of(s, k, CKA_CUSTOS_ENCRYPT_COUNT, "read CKA_CUSTOS_ENCRYPT_COUNT");
}

static void test_encrypt_count_grows_with_gcm_encryptions(void)
{
    fixture();
    CK_SESSION_HANDLE s = as_user(U_BOTH);
    CK_ATTRIBUTE tok[] = { { CKA_TOKEN, &h_true, 1 }, { CKA_LABEL, "nonce-key", 9 } };
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, tok, NELEM(tok));
    CK_ULONG c0 = enc_count(s, k);
    CHECK(c0 == 0, "a new key's CKA_CUSTOS_ENCRYPT_COUNT is 0");
    msg m;
    CK_RV rv = CKR_OK;
    for (int i = 0; i < 100 && rv == CKR_OK; i++)
        rv = seal(s, k, &m);
    RV_REQ(rv, CKR_OK, "100 x C_EncryptInit + C_Encrypt (AES-GCM)");
    CK_ULONG c1 = enc_count(s, k);
    printf("\n  [families] CKA_CUSTOS_ENCRYPT_COUNT after 0/100 GCM encryptions: %lu/%lu", (unsigned long)c0,
           (unsigned long)c1);
    CHECK(c1 >= 100, "the count is at least the number of encryptions");
    for (int i = 0; i < 10; i++)
        RV_EQ(open_msg(s, k, &m), CKR_OK, "decrypt");
    CHECK(enc_count(s, k) == c1, "decryptions do not count");

    /* Persistent: a fresh C_Initialize reads the same count. */
    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");
    RV_REQ(F->C_Initialize(NULL), CKR_OK, "C_Initialize");
    s = as_user(U_BOTH);
    k = current(s, "nonce-key");
    CK_ULONG c2 = enc_count(s, k);
    CHECK(c2 == c1, "the count survives C_Finalize/C_Initialize");
    RV_REQ(seal(s, k, &m), CKR_OK, "one more encryption in the new initialisation");
    CK_ULONG c3 = enc_count(s, k);
    printf("\n  [families] after re-initialisation: %lu; after one more encryption: %lu\n",
           (unsigned long)c2, (unsigned long)c3);
    CHECK(c3 >= c2 + 1, "the count grows in a new initialisation");
}

/* [policy] caller_iv = refuse, in a forked child with its own config. */
struct iv_result {
    CK_RV init, login_gen, enc_init, wrap, login_dec, decrypt;
};

static void iv_child(int res_w, const char *conf, const msg *m)
{
    struct iv_result r = { CKR_GENERAL_ERROR, CKR_GENERAL_ERROR, CKR_GENERAL_ERROR,
                           CKR_GENERAL_ERROR, CKR_GENERAL_ERROR, CKR_GENERAL_ERROR };
    CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE h[2];
    alarm(300);
    setenv("CUSTOS_CONF", conf, 1);
    r.init = F->C_Initialize(NULL);
    if (r.init == CKR_OK && F->C_OpenSession(FT.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
                                             &s) == CKR_OK)
        r.login_gen = h_login_rv(s, CKU_USER, U[U_GEN].pin);
    if (r.login_gen == CKR_OK) {
        CK_ATTRIBUTE lk[] = { { CKA_LABEL, "iv-key", 6 } };
        CK_ATTRIBUTE lw[] = { { CKA_LABEL, "iv-kek", 6 } };
        CK_ATTRIBUTE ld[] = { { CKA_LABEL, "iv-dek", 6 } };
        CK_ULONG n = 0;
        uint8_t iv[12], pt[16] = { 0 }, ct[32], w[64];
        CK_ULONG ctlen = sizeof(ct), wlen = sizeof(w);
        CK_GCM_PARAMS p;
        CK_MECHANISM mech;
        h_random(iv, sizeof(iv));
        gcm(&p, &mech, iv);
        if (F->C_FindObjectsInit(s, lk, 1) == CKR_OK && F->C_FindObjects(s, h, 1, &n) == CKR_OK &&
            F->C_FindObjectsFinal(s) == CKR_OK && n == 1) {
            r.enc_init = F->C_EncryptInit(s, &mech, h[0]);
            if (r.enc_init == CKR_OK)
                (void)F->C_Encrypt(s, pt, sizeof(pt), ct, &ctlen);
        }
        n = 0;
        if (F->C_FindObjectsInit(s, lw, 1) == CKR_OK && F->C_FindObjects(s, h, 1, &n) == CKR_OK &&
            F->C_FindObjectsFinal(s) == CKR_OK && n == 1) {
            CK_ULONG n2 = 0;
            if (F->C_FindObjectsInit(s, ld, 1) == CKR_OK && F->C_FindObjects(s, h + 1, 1, &n2) == CKR_OK &&
                F->C_FindObjectsFinal(s) == CKR_OK && n2 == 1)
                r.wrap = wrap(s, h[0], h[1], w, &wlen);
        }
        (void)F->C_Logout(s);
        r.login_dec = h_login_rv(s, CKU_USER, U[U_DEC].pin);
    }
    if (r.login_dec == CKR_OK) {
        CK_ATTRIBUTE lk[] = { { CKA_LABEL, "iv-key", 6 } };
        CK_ULONG n = 0;
        if (F->C_FindObjectsInit(s, lk, 1) == CKR_OK && F->C_FindObjects(s, h, 1, &n) == CKR_OK &&
            F->C_FindObjectsFinal(s) == CKR_OK && n == 1)
            r.decrypt = open_msg(s, h[0], m);
    }
    (void)F->C_Finalize(NULL);
    _exit(write(res_w, &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 3);
}

/* Write a config for the suite's store with the given [policy] caller_iv. */
static void write_conf(char *path, size_t cap, const char *caller_iv)
{
    snprintf(path, cap, "%s/caller-iv-%s.conf", h_tmpdir(), caller_iv);
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL, "write a second config file");
    fprintf(f,
            "[store]\npath = %s/store\n"
            "[pin]\nkdf = pbkdf2\npbkdf2_iterations = 1000\nmax_retries = 10\n"
            "[policy]\ncaller_iv = %s\n",
            h_tmpdir(), caller_iv);
    REQUIRE(fclose(f) == 0, "close the config file");
}

/* Run iv_child with the config and collect what it saw. */
static void run_iv_child(const char *conf, const msg *m, struct iv_result *r)
{
    int res[2];
    REQUIRE(pipe(res) == 0, "pipe");
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork");
    if (pid == 0) {
        close(res[0]);
        iv_child(res[1], conf, m);
    }
    close(res[1]);
    int st = 0;
    REQUIRE(waitpid(pid, &st, 0) == pid, "waitpid");
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child exited normally");
    REQUIRE(read(res[0], r, sizeof(*r)) == (ssize_t)sizeof(*r), "the child's result");
    close(res[0]);
    RV_REQ(r->init, CKR_OK, "child C_Initialize with its own config");
    RV_REQ(r->login_gen, CKR_OK, "child C_Login(gen)");
    RV_REQ(r->login_dec, CKR_OK, "child C_Login(dec)");
}

static void test_caller_iv_refuse_policy(void)
{
    fixture();
    char count_conf[160], refuse_conf[160];
    write_conf(count_conf, sizeof(count_conf), "count");
    write_conf(refuse_conf, sizeof(refuse_conf), "refuse");

    CK_SESSION_HANDLE s = as_user(U_GEN);
    CK_ATTRIBUTE key_t[] = { { CKA_TOKEN, &h_true, 1 }, { CKA_LABEL, "iv-key", 6 } };
    CK_ATTRIBUTE kek_t[] = { { CKA_TOKEN, &h_true, 1 }, { CKA_LABEL, "iv-kek", 6 },
                             { CKA_WRAP, &h_true, 1 }, { CKA_UNWRAP, &h_true, 1 } };
    CK_ATTRIBUTE dek_t[] = { { CKA_TOKEN, &h_true, 1 }, { CKA_LABEL, "iv-dek", 6 },
                             { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE k = h_aes_key(s, 32, key_t, NELEM(key_t));
    (void)h_aes_key(s, 32, kek_t, NELEM(kek_t));
    (void)h_aes_key(s, 32, dek_t, NELEM(dek_t));
    msg m;
    RV_REQ(seal(s, k, &m), CKR_OK, "gen encrypts with a caller IV under the default policy (count)");
    RV_REQ(F->C_CloseSession(s), CKR_OK, "close the parent's session before forking");

    /* Control: the same child under caller_iv = count encrypts. */
    struct iv_result r;
    run_iv_child(count_conf, &m, &r);
    RV_EQ(r.enc_init, CKR_OK, "child C_EncryptInit(CKM_AES_GCM) with a caller IV under caller_iv = count");
    RV_EQ(r.wrap, CKR_OK, "child C_WrapKey under caller_iv = count");
    RV_EQ(r.decrypt, CKR_OK, "child AES-GCM decryption under caller_iv = count");

    run_iv_child(refuse_conf, &m, &r);
    /* docs/key-families.md, Nonce discipline: "refuse (strict:
     * CKR_ACTION_PROHIBITED, the PKCS#11 3.0 code for a policy refusal)". */
    RV_EQ(r.enc_init, CKR_ACTION_PROHIBITED,
          "C_EncryptInit(CKM_AES_GCM) with a caller IV under caller_iv = refuse (docs/key-families.md)");
    RV_EQ(r.wrap, CKR_OK, "C_WrapKey (KWP, no caller IV) under caller_iv = refuse");
    RV_EQ(r.decrypt, CKR_OK, "AES-GCM decryption still works under caller_iv = refuse");

    /* The policy is the child's configuration, not the token's. */
    s = as_user(U_GEN);
    msg again;
    RV_EQ(seal(s, current(s, "iv-key"), &again), CKR_OK, "the parent (caller_iv = count) still encrypts");
}

static const h_case CASES[] = {
    H_CASE(test_admin_creates_family_as_version_1),
    H_CASE(test_non_admin_cannot_create_a_family),
    H_CASE(test_family_name_rules),
    H_CASE(test_family_template_inconsistencies),
    H_CASE(test_family_template_read_only_attributes),
    H_CASE(test_family_exists_after_version_1_is_destroyed),
    H_CASE(test_admin_rotation_versions_labels_and_rewrap),
    H_CASE(test_rotate_refusals),
    H_CASE(test_rotate_with_seen_version_is_compare_and_swap),
    H_CASE(test_rotation_race_makes_exactly_one_version),
    H_CASE(test_rotation_race_without_seen_version_stays_consistent),
    H_CASE(test_rotation_period_rotates_on_first_protecting_use),
    H_CASE(test_rotate_due_rotates_due_families_and_counts),
    H_CASE(test_states_set_by_admin),
    H_CASE(test_start_date_tomorrow_forbids_any_use),
    H_CASE(test_end_date_yesterday_forbids_encrypt_not_decrypt),
    H_CASE(test_not_after_in_the_past_forbids_encrypt),
    H_CASE(test_encrypt_count_grows_with_gcm_encryptions),
    H_CASE(test_caller_iv_refuse_policy),
};

int t_families_register(void)
{
    return h_add_suite("families", CASES, NELEM(CASES));
}
