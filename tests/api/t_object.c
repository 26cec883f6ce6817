/* Object management as a client sees it: C_CreateObject template rules,
 * C_GetAttributeValue per attribute (sec. 5.7.5 rules for every
 * ulValueLen), C_SetAttributeValue sticky attributes, C_CopyObject,
 * C_DestroyObject, C_GetObjectSize and the C_FindObjects family.
 * PKCS#11 3.2 sec. 4 and 5.7. */
#include "harness.h"

#include <stdio.h>
#include <string.h>

#define ATTR_UNKNOWN ((CK_ATTRIBUTE_TYPE)0x0fffff00UL) /* not defined anywhere */

static const uint8_t KEY16[16] = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
                                   0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f };

static void unique_label(char *out, size_t cap, const char *prefix)
{
    char r[17];
    h_random_hex(r, 8);
    snprintf(out, cap, "%s-%s", prefix, r);
}

static void test_create_data_object(void)
{
    CK_SESSION_HANDLE s = h_open(H.slot, 1);
    CK_OBJECT_CLASS cls = CKO_DATA;
    char value[] = "hello, data";
    CK_ATTRIBUTE t[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_LABEL, "api-data", 8 },
        { CKA_APPLICATION, "api", 3 },
        { CKA_VALUE, value, sizeof(value) - 1 },
    };
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    RV_REQ(F->C_CreateObject(s, t, NELEM(t), &o), CKR_OK, "C_CreateObject(data)");
    CHECK(o != CK_INVALID_HANDLE, "valid object handle");
    char back[32];
    CK_ATTRIBUTE r = { CKA_VALUE, back, sizeof(back) };
    RV_EQ(F->C_GetAttributeValue(s, o, &r, 1), CKR_OK, "read CKA_VALUE of a data object");
    CHECK(r.ulValueLen == sizeof(value) - 1 && memcmp(back, value, r.ulValueLen) == 0,
          "data object value round trip");
    CK_BBOOL b = CK_TRUE;
    RV_EQ(h_get_bool(s, o, CKA_PRIVATE, &b), CKR_OK, "read CKA_PRIVATE");
    CHECK(b == CK_FALSE, "data objects default to CKA_PRIVATE false");
    RV_EQ(h_get_bool(s, o, CKA_TOKEN, &b), CKR_OK, "read CKA_TOKEN");
    CHECK(b == CK_FALSE, "CKA_TOKEN defaults to false");
    RV_EQ(F->C_CreateObject(s, t, NELEM(t), NULL), CKR_ARGUMENTS_BAD,
          "C_CreateObject(phObject NULL)");
    RV_EQ(F->C_CreateObject(s, NULL, 2, &o), CKR_ARGUMENTS_BAD,
          "C_CreateObject(pTemplate NULL, 2)");
}

static void test_create_aes_key_with_value(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_ATTRIBUTE extra[] = { { CKA_ENCRYPT, &h_true, 1 } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, KEY16, 16, extra, NELEM(extra));
    CK_ULONG ul = 0;
    CK_BBOOL b;
    RV_EQ(h_get_ulong(s, k, CKA_VALUE_LEN, &ul), CKR_OK, "read CKA_VALUE_LEN");
    CHECK(ul == 16, "CKA_VALUE_LEN computed from the value");
    RV_EQ(h_get_bool(s, k, CKA_LOCAL, &b), CKR_OK, "read CKA_LOCAL");
    CHECK(b == CK_FALSE, "imported key: CKA_LOCAL false");
    RV_EQ(h_get_bool(s, k, CKA_ALWAYS_SENSITIVE, &b), CKR_OK, "read CKA_ALWAYS_SENSITIVE");
    CHECK(b == CK_FALSE, "imported key: CKA_ALWAYS_SENSITIVE false");
    RV_EQ(h_get_bool(s, k, CKA_NEVER_EXTRACTABLE, &b), CKR_OK, "read CKA_NEVER_EXTRACTABLE");
    CHECK(b == CK_FALSE, "imported key: CKA_NEVER_EXTRACTABLE false");
    RV_EQ(h_get_bool(s, k, CKA_SENSITIVE, &b), CKR_OK, "read CKA_SENSITIVE");
    CHECK(b == CK_TRUE, "CKA_SENSITIVE defaults to true");
    RV_EQ(h_get_bool(s, k, CKA_EXTRACTABLE, &b), CKR_OK, "read CKA_EXTRACTABLE");
    CHECK(b == CK_FALSE, "CKA_EXTRACTABLE defaults to false");
    RV_EQ(h_get_bool(s, k, CKA_PRIVATE, &b), CKR_OK, "read CKA_PRIVATE");
    CHECK(b == CK_TRUE, "keys default to CKA_PRIVATE true");
    RV_EQ(h_get_bool(s, k, CKA_DECRYPT, &b), CKR_OK, "read CKA_DECRYPT");
    CHECK(b == CK_FALSE, "usage flags default to false");
    uint8_t v[32];
    CK_ATTRIBUTE r = { CKA_VALUE, v, sizeof(v) };
    RV_EQ(F->C_GetAttributeValue(s, k, &r, 1), CKR_ATTRIBUTE_SENSITIVE,
          "CKA_VALUE of a sensitive key");
    CHECK(r.ulValueLen == CK_UNAVAILABLE_INFORMATION,
          "sensitive CKA_VALUE: ulValueLen CK_UNAVAILABLE_INFORMATION");

    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    uint8_t v17[17] = { 0 };
    CK_ATTRIBUTE bad[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_VALUE, v17, sizeof(v17) },
    };
    CK_OBJECT_HANDLE o;
    RV_EQ(F->C_CreateObject(s, bad, NELEM(bad), &o), CKR_ATTRIBUTE_VALUE_INVALID,
          "C_CreateObject(AES key of 17 bytes)");
    RV_EQ(F->C_CreateObject(s, bad, 2, &o), CKR_TEMPLATE_INCOMPLETE,
          "C_CreateObject(secret key without CKA_VALUE)");
}

static void test_create_template_errors(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_CLASS cls = CKO_DATA, cls2 = CKO_SECRET_KEY;
    CK_BBOOL two = 2;
    CK_ULONG wide = 1;
    CK_OBJECT_HANDLE o;

    CK_ATTRIBUTE noclass[] = { { CKA_LABEL, "x", 1 } };
    RV_EQ(F->C_CreateObject(s, noclass, NELEM(noclass), &o), CKR_TEMPLATE_INCOMPLETE,
          "C_CreateObject without CKA_CLASS");
    CK_ATTRIBUTE badbool[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_TOKEN, &two, 1 } };
    RV_EQ(F->C_CreateObject(s, badbool, NELEM(badbool), &o), CKR_ATTRIBUTE_VALUE_INVALID,
          "C_CreateObject(CK_BBOOL of value 2)");
    CK_ATTRIBUTE widebool[] = { { CKA_CLASS, &cls, sizeof(cls) },
                                { CKA_TOKEN, &wide, sizeof(wide) } };
    RV_EQ(F->C_CreateObject(s, widebool, NELEM(widebool), &o), CKR_ATTRIBUTE_VALUE_INVALID,
          "C_CreateObject(CK_BBOOL of 8 bytes)");
    CK_ATTRIBUTE unknown[] = { { CKA_CLASS, &cls, sizeof(cls) }, { ATTR_UNKNOWN, "x", 1 } };
    RV_EQ(F->C_CreateObject(s, unknown, NELEM(unknown), &o), CKR_ATTRIBUTE_TYPE_INVALID,
          "C_CreateObject(unknown attribute)");
    CK_ATTRIBUTE local[] = {
        { CKA_CLASS, &cls2, sizeof(cls2) },
        { CKA_KEY_TYPE, &(CK_KEY_TYPE){ CKK_AES }, sizeof(CK_KEY_TYPE) },
        { CKA_VALUE, (void *)KEY16, 16 },
        { CKA_LOCAL, &h_true, 1 },
    };
    RV_EQ(F->C_CreateObject(s, local, NELEM(local), &o), CKR_ATTRIBUTE_READ_ONLY,
          "C_CreateObject(CKA_LOCAL true)");
    CK_ATTRIBUTE twice[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_CLASS, &cls2, sizeof(cls2) } };
    RV_EQ(F->C_CreateObject(s, twice, NELEM(twice), &o), CKR_TEMPLATE_INCONSISTENT,
          "C_CreateObject(CKA_CLASS twice, different values)");
    RV_EQ(F->C_CreateObject(H_BAD_SESSION, noclass, 1, &o), CKR_SESSION_HANDLE_INVALID,
          "C_CreateObject(bad session)");
}

static void test_create_respects_session_and_login(void)
{
    CK_SESSION_HANDLE ro = h_open(H.slot, 0), rw = h_open(H.slot, 1);
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_OBJECT_HANDLE o;
    CK_ATTRIBUTE tok[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_TOKEN, &h_true, 1 } };
    RV_EQ(F->C_CreateObject(ro, tok, NELEM(tok), &o), CKR_SESSION_READ_ONLY,
          "token object in an RO session");
    CK_ATTRIBUTE ses[] = { { CKA_CLASS, &cls, sizeof(cls) } };
    RV_EQ(F->C_CreateObject(ro, ses, NELEM(ses), &o), CKR_OK,
          "public session object in an RO session");
    CK_ATTRIBUTE priv[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_PRIVATE, &h_true, 1 } };
    RV_EQ(F->C_CreateObject(rw, priv, NELEM(priv), &o), CKR_USER_NOT_LOGGED_IN,
          "private data object when not logged in");
    CK_OBJECT_CLASS kc = CKO_SECRET_KEY;
    CK_KEY_TYPE kt = CKK_AES;
    CK_ATTRIBUTE key[] = {
        { CKA_CLASS, &kc, sizeof(kc) },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_VALUE, (void *)KEY16, 16 },
    };
    RV_EQ(F->C_CreateObject(rw, key, NELEM(key), &o), CKR_USER_NOT_LOGGED_IN,
          "key (private by default) when not logged in");
}

static void test_get_attribute_value_rules(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_ATTRIBUTE extra[] = { { CKA_LABEL, "api-attr-label", 14 } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, KEY16, 16, extra, NELEM(extra));
    uint8_t buf[64];

    CK_ATTRIBUTE q = { CKA_LABEL, NULL, 0 };
    RV_EQ(F->C_GetAttributeValue(s, k, &q, 1), CKR_OK, "size query of CKA_LABEL");
    CHECK(q.ulValueLen == 14, "size query gives the label length");
    CK_ATTRIBUTE shortb = { CKA_LABEL, buf, 5 };
    RV_EQ(F->C_GetAttributeValue(s, k, &shortb, 1), CKR_BUFFER_TOO_SMALL,
          "CKA_LABEL into 5 bytes");
    CHECK(shortb.ulValueLen == CK_UNAVAILABLE_INFORMATION,
          "short buffer: ulValueLen CK_UNAVAILABLE_INFORMATION");
    CK_ATTRIBUTE unk = { ATTR_UNKNOWN, buf, sizeof(buf) };
    RV_EQ(F->C_GetAttributeValue(s, k, &unk, 1), CKR_ATTRIBUTE_TYPE_INVALID,
          "unknown attribute");
    CHECK(unk.ulValueLen == CK_UNAVAILABLE_INFORMATION,
          "unknown attribute: ulValueLen CK_UNAVAILABLE_INFORMATION");

    /* Several at once: every attribute is processed (sec. 5.7.5). */
    CK_OBJECT_CLASS cls = 0;
    CK_KEY_TYPE kt = 0;
    uint8_t val[32], lab[4];
    CK_ATTRIBUTE mixed[] = {
        { CKA_CLASS, &cls, sizeof(cls) },
        { CKA_VALUE, val, sizeof(val) },
        { ATTR_UNKNOWN, buf, sizeof(buf) },
        { CKA_LABEL, lab, sizeof(lab) },
        { CKA_ID, NULL, 0 },
        { CKA_KEY_TYPE, &kt, sizeof(kt) },
        { CKA_LABEL, NULL, 0 },
    };
    CK_RV rv = F->C_GetAttributeValue(s, k, mixed, NELEM(mixed));
    CHECK(rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID ||
              rv == CKR_BUFFER_TOO_SMALL,
          "mixed C_GetAttributeValue returns one of the codes met");
    CHECK(mixed[0].ulValueLen == sizeof(cls) && cls == CKO_SECRET_KEY, "mixed: CKA_CLASS read");
    CHECK(mixed[1].ulValueLen == CK_UNAVAILABLE_INFORMATION, "mixed: sensitive CKA_VALUE");
    CHECK(mixed[2].ulValueLen == CK_UNAVAILABLE_INFORMATION, "mixed: unknown attribute");
    CHECK(mixed[3].ulValueLen == CK_UNAVAILABLE_INFORMATION, "mixed: short label buffer");
    CHECK(mixed[4].ulValueLen == 0, "mixed: size of empty CKA_ID is 0");
    CHECK(mixed[5].ulValueLen == sizeof(kt) && kt == CKK_AES, "mixed: CKA_KEY_TYPE read");
    CHECK(mixed[6].ulValueLen == 14, "mixed: CKA_LABEL size query");

    /* A non-sensitive, extractable key gives its value. */
    CK_ATTRIBUTE open[] = { { CKA_SENSITIVE, &h_false, 1 }, { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE k2 = h_import_key(s, CKK_AES, KEY16, 16, open, NELEM(open));
    CK_ATTRIBUTE r = { CKA_VALUE, val, sizeof(val) };
    RV_EQ(F->C_GetAttributeValue(s, k2, &r, 1), CKR_OK, "CKA_VALUE of a non-sensitive key");
    CHECK(r.ulValueLen == 16 && memcmp(val, KEY16, 16) == 0, "value read back");

    RV_EQ(F->C_GetAttributeValue(s, H_BAD_OBJECT, &r, 1), CKR_OBJECT_HANDLE_INVALID,
          "C_GetAttributeValue(bad object)");
    RV_EQ(F->C_GetAttributeValue(s, k, NULL, 1), CKR_ARGUMENTS_BAD,
          "C_GetAttributeValue(pTemplate NULL)");
}

static void test_logout_invalidates_private_handles(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, KEY16, 16, NULL, 0);
    CK_OBJECT_HANDLE d = h_data_object(s, "api-public-survives");
    CK_ULONG ul;
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    RV_EQ(h_get_ulong(s, k, CKA_CLASS, &ul), CKR_OBJECT_HANDLE_INVALID,
          "private session object gone after logout");
    RV_EQ(h_get_ulong(s, d, CKA_CLASS, &ul), CKR_OK, "public session object survives logout");
}

static void test_set_attribute_value_rules(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_ATTRIBUTE open[] = { { CKA_SENSITIVE, &h_false, 1 }, { CKA_EXTRACTABLE, &h_true, 1 } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, KEY16, 16, open, NELEM(open));
    char lab[32];
    CK_BBOOL b;

    CK_ATTRIBUTE setl = { CKA_LABEL, "renamed", 7 };
    RV_EQ(F->C_SetAttributeValue(s, k, &setl, 1), CKR_OK, "set CKA_LABEL");
    CK_ATTRIBUTE getl = { CKA_LABEL, lab, sizeof(lab) };
    RV_EQ(F->C_GetAttributeValue(s, k, &getl, 1), CKR_OK, "read CKA_LABEL");
    CHECK(getl.ulValueLen == 7 && memcmp(lab, "renamed", 7) == 0, "label changed");

    CK_ATTRIBUTE sens_on = { CKA_SENSITIVE, &h_true, 1 }, sens_off = { CKA_SENSITIVE, &h_false, 1 };
    RV_EQ(F->C_SetAttributeValue(s, k, &sens_on, 1), CKR_OK, "CKA_SENSITIVE false -> true");
    RV_EQ(F->C_SetAttributeValue(s, k, &sens_off, 1), CKR_ATTRIBUTE_READ_ONLY,
          "CKA_SENSITIVE true -> false refused");
    RV_EQ(h_get_bool(s, k, CKA_SENSITIVE, &b), CKR_OK, "read CKA_SENSITIVE");
    CHECK(b == CK_TRUE, "CKA_SENSITIVE stays true");
    CK_ATTRIBUTE ext_off = { CKA_EXTRACTABLE, &h_false, 1 }, ext_on = { CKA_EXTRACTABLE, &h_true, 1 };
    RV_EQ(F->C_SetAttributeValue(s, k, &ext_off, 1), CKR_OK, "CKA_EXTRACTABLE true -> false");
    RV_EQ(F->C_SetAttributeValue(s, k, &ext_on, 1), CKR_ATTRIBUTE_READ_ONLY,
          "CKA_EXTRACTABLE false -> true refused");
    CK_OBJECT_CLASS dc = CKO_DATA;
    CK_ATTRIBUTE cls = { CKA_CLASS, &dc, sizeof(dc) };
    RV_EQ(F->C_SetAttributeValue(s, k, &cls, 1), CKR_ATTRIBUTE_READ_ONLY, "change CKA_CLASS");
    CK_ATTRIBUTE unk = { ATTR_UNKNOWN, "x", 1 };
    RV_EQ(F->C_SetAttributeValue(s, k, &unk, 1), CKR_ATTRIBUTE_TYPE_INVALID,
          "set an unknown attribute");

    CK_ATTRIBUTE fixed[] = { { CKA_MODIFIABLE, &h_false, 1 } };
    CK_OBJECT_HANDLE k2 = h_import_key(s, CKK_AES, KEY16, 16, fixed, NELEM(fixed));
    RV_EQ(F->C_SetAttributeValue(s, k2, &setl, 1), CKR_ACTION_PROHIBITED,
          "C_SetAttributeValue on CKA_MODIFIABLE false");
    RV_EQ(F->C_SetAttributeValue(s, H_BAD_OBJECT, &setl, 1), CKR_OBJECT_HANDLE_INVALID,
          "C_SetAttributeValue(bad object)");
    RV_EQ(F->C_SetAttributeValue(s, k, NULL, 1), CKR_ARGUMENTS_BAD,
          "C_SetAttributeValue(pTemplate NULL)");

    /* A token object cannot be changed through an RO session. */
    char name[48];
    unique_label(name, sizeof(name), "api-ro-set");
    CK_OBJECT_CLASS oc = CKO_DATA;
    CK_ATTRIBUTE tok[] = { { CKA_CLASS, &oc, sizeof(oc) }, { CKA_TOKEN, &h_true, 1 },
                           { CKA_LABEL, name, strlen(name) } };
    CK_OBJECT_HANDLE t;
    RV_REQ(F->C_CreateObject(s, tok, NELEM(tok), &t), CKR_OK, "token data object");
    CK_SESSION_HANDLE ro = h_open(H.slot, 0);
    RV_EQ(F->C_SetAttributeValue(ro, t, &setl, 1), CKR_SESSION_READ_ONLY,
          "C_SetAttributeValue on a token object in an RO session");
    RV_EQ(F->C_DestroyObject(ro, t), CKR_SESSION_READ_ONLY,
          "C_DestroyObject of a token object in an RO session");
    RV_EQ(F->C_DestroyObject(s, t), CKR_OK, "C_DestroyObject(token object)");
}

static void test_copy_object(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, "orig", 4 },
                         { CKA_VALUE, "payload", 7 } };
    CK_OBJECT_HANDLE o, c, tc;
    RV_REQ(F->C_CreateObject(s, t, NELEM(t), &o), CKR_OK, "data object");
    CK_ATTRIBUTE relabel = { CKA_LABEL, "copy", 4 };
    RV_EQ(F->C_CopyObject(s, o, &relabel, 1, &c), CKR_OK, "C_CopyObject with a new label");
    CHECK(c != o, "copy has a new handle");
    char buf[16];
    CK_ATTRIBUTE r[] = { { CKA_LABEL, buf, 4 }, { CKA_VALUE, buf + 4, 7 } };
    RV_EQ(F->C_GetAttributeValue(s, c, r, 2), CKR_OK, "read the copy");
    CHECK(memcmp(buf, "copy", 4) == 0 && memcmp(buf + 4, "payload", 7) == 0,
          "copy has the new label and the old value");

    CK_ATTRIBUTE totoken = { CKA_TOKEN, &h_true, 1 };
    RV_EQ(F->C_CopyObject(s, o, &totoken, 1, &tc), CKR_OK, "C_CopyObject to a token object");
    CK_BBOOL b = CK_FALSE;
    RV_EQ(h_get_bool(s, tc, CKA_TOKEN, &b), CKR_OK, "read CKA_TOKEN of the copy");
    CHECK(b == CK_TRUE, "copy is a token object");
    RV_EQ(F->C_DestroyObject(s, tc), CKR_OK, "destroy the token copy");

    CK_ATTRIBUTE nocopy[] = { { CKA_COPYABLE, &h_false, 1 } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, KEY16, 16, nocopy, NELEM(nocopy));
    RV_EQ(F->C_CopyObject(s, k, &relabel, 1, &c), CKR_ACTION_PROHIBITED,
          "C_CopyObject of CKA_COPYABLE false");
    CK_OBJECT_HANDLE k2 = h_import_key(s, CKK_AES, KEY16, 16, NULL, 0);
    CK_ATTRIBUTE unsens = { CKA_SENSITIVE, &h_false, 1 };
    RV_EQ(F->C_CopyObject(s, k2, &unsens, 1, &c), CKR_ATTRIBUTE_READ_ONLY,
          "C_CopyObject making a sensitive key non-sensitive");
    RV_EQ(F->C_CopyObject(s, H_BAD_OBJECT, &relabel, 1, &c), CKR_OBJECT_HANDLE_INVALID,
          "C_CopyObject(bad object)");
    RV_EQ(F->C_CopyObject(s, o, &relabel, 1, NULL), CKR_ARGUMENTS_BAD,
          "C_CopyObject(phNewObject NULL)");
}

static void test_destroy_object(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE o = h_data_object(s, "api-destroy");
    CK_ULONG ul;
    RV_EQ(F->C_DestroyObject(s, o), CKR_OK, "C_DestroyObject");
    RV_EQ(h_get_ulong(s, o, CKA_CLASS, &ul), CKR_OBJECT_HANDLE_INVALID,
          "handle invalid after C_DestroyObject");
    RV_EQ(F->C_DestroyObject(s, o), CKR_OBJECT_HANDLE_INVALID, "C_DestroyObject twice");
    CK_ATTRIBUTE keep[] = { { CKA_DESTROYABLE, &h_false, 1 } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, KEY16, 16, keep, NELEM(keep));
    RV_EQ(F->C_DestroyObject(s, k), CKR_ACTION_PROHIBITED, "C_DestroyObject of DESTROYABLE false");
    RV_EQ(h_get_ulong(s, k, CKA_CLASS, &ul), CKR_OK, "undestroyable key still there");
}

static void test_get_object_size(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    CK_OBJECT_HANDLE o = h_data_object(s, "api-size");
    CK_ULONG size = 0;
    RV_EQ(F->C_GetObjectSize(s, o, &size), CKR_OK, "C_GetObjectSize");
    CHECK(size > 0, "object size is positive (or CK_UNAVAILABLE_INFORMATION)");
    RV_EQ(F->C_GetObjectSize(s, o, NULL), CKR_ARGUMENTS_BAD, "C_GetObjectSize(NULL)");
    RV_EQ(F->C_GetObjectSize(s, H_BAD_OBJECT, &size), CKR_OBJECT_HANDLE_INVALID,
          "C_GetObjectSize(bad object)");
}

static void test_find_by_label_class_and_id(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    char label[48], other[48];
    unique_label(label, sizeof(label), "api-find");
    unique_label(other, sizeof(other), "api-find-other");
    CK_OBJECT_HANDLE d1 = h_data_object(s, label), d2 = h_data_object(s, label);
    (void)h_data_object(s, other);
    CK_ATTRIBUTE kx[] = { { CKA_ID, "kid-1", 5 }, { CKA_LABEL, label, strlen(label) } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, KEY16, 16, kx, NELEM(kx));

    CK_ATTRIBUTE byl = { CKA_LABEL, label, strlen(label) };
    CK_OBJECT_HANDLE found[8];
    CK_ULONG n = 0;
    RV_REQ(F->C_FindObjectsInit(s, &byl, 1), CKR_OK, "C_FindObjectsInit(label)");
    RV_EQ(F->C_FindObjects(s, found, NELEM(found), &n), CKR_OK, "C_FindObjects");
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");
    CHECK(n == 3, "label matches two data objects and one key");
    int s1 = 0, s2 = 0, s3 = 0;
    for (CK_ULONG i = 0; i < n; i++) {
        s1 |= found[i] == d1;
        s2 |= found[i] == d2;
        s3 |= found[i] == k;
    }
    CHECK(s1 && s2 && s3, "the right handles are found");

    CK_OBJECT_CLASS kc = CKO_SECRET_KEY;
    CK_ATTRIBUTE byid[] = { { CKA_CLASS, &kc, sizeof(kc) }, { CKA_ID, "kid-1", 5 },
                            { CKA_LABEL, label, strlen(label) } };
    CHECK(h_count(s, byid, NELEM(byid)) == 1, "class + id + label finds the key");
    CK_OBJECT_CLASS dc = CKO_DATA;
    CK_ATTRIBUTE bycls[] = { { CKA_CLASS, &dc, sizeof(dc) }, { CKA_LABEL, label, strlen(label) } };
    CHECK(h_count(s, bycls, NELEM(bycls)) == 2, "class data + label finds two objects");
    CHECK(h_count(s, NULL, 0) >= 4, "empty template finds every object");
    CK_ATTRIBUTE none = { CKA_LABEL, "no-such-label-anywhere", 22 };
    CHECK(h_count(s, &none, 1) == 0, "no match finds nothing");
}

static void test_find_private_only_after_login(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    char label[48];
    unique_label(label, sizeof(label), "api-private");
    CK_ATTRIBUTE kx[] = { { CKA_TOKEN, &h_true, 1 }, { CKA_LABEL, label, strlen(label) } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, KEY16, 16, kx, NELEM(kx));
    CK_ATTRIBUTE byl = { CKA_LABEL, label, strlen(label) };
    CHECK(h_count(s, &byl, 1) == 1, "private token key visible when logged in");
    RV_EQ(F->C_Logout(s), CKR_OK, "C_Logout");
    CHECK(h_count(s, &byl, 1) == 0, "private token key invisible before login");
    CK_ULONG ul;
    RV_EQ(h_get_ulong(s, k, CKA_CLASS, &ul), CKR_OBJECT_HANDLE_INVALID,
          "handle of a private token key invalid while logged out");
    h_login(s, CKU_USER, H.user_pin);
    CHECK(h_count(s, &byl, 1) == 1, "private token key visible after login");
    /* Sec. 5.6, C_Logout: handles to private objects stay invalid even
     * after a new login; the key is found again for a fresh handle. */
    RV_EQ(h_get_ulong(s, k, CKA_CLASS, &ul), CKR_OBJECT_HANDLE_INVALID,
          "old handle of a private token key invalid after logout and new login");
    CK_OBJECT_HANDLE again = CK_INVALID_HANDLE;
    CK_ULONG n = 0;
    RV_REQ(F->C_FindObjectsInit(s, &byl, 1), CKR_OK, "C_FindObjectsInit");
    RV_EQ(F->C_FindObjects(s, &again, 1, &n), CKR_OK, "C_FindObjects");
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");
    if (n == 1)
        RV_EQ(F->C_DestroyObject(s, again), CKR_OK, "destroy the token key");
}

static void test_find_session_objects_across_sessions(void)
{
    CK_SESSION_HANDLE s1 = h_open(H.slot, 1), s2 = h_open(H.slot, 0);
    char label[48];
    unique_label(label, sizeof(label), "api-shared");
    CK_OBJECT_HANDLE o = h_data_object(s1, label);
    CK_ATTRIBUTE byl = { CKA_LABEL, label, strlen(label) };
    CK_OBJECT_HANDLE f = CK_INVALID_HANDLE;
    CK_ULONG n = 0;
    RV_REQ(F->C_FindObjectsInit(s2, &byl, 1), CKR_OK, "C_FindObjectsInit in s2");
    RV_EQ(F->C_FindObjects(s2, &f, 1, &n), CKR_OK, "C_FindObjects in s2");
    RV_EQ(F->C_FindObjectsFinal(s2), CKR_OK, "C_FindObjectsFinal");
    CHECK(n == 1 && f == o, "s2 finds s1's session object, same handle");
}

static void test_token_objects_persist_across_finalize(void)
{
    CK_SESSION_HANDLE s = h_open(H.slot, 1);
    char label[48];
    unique_label(label, sizeof(label), "api-persist");
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_TOKEN, &h_true, 1 },
                         { CKA_LABEL, label, strlen(label) }, { CKA_VALUE, "kept", 4 } };
    CK_OBJECT_HANDLE o;
    RV_REQ(F->C_CreateObject(s, t, NELEM(t), &o), CKR_OK, "token data object");
    RV_REQ(F->C_Finalize(NULL), CKR_OK, "C_Finalize");
    RV_REQ(F->C_Initialize(NULL), CKR_OK, "C_Initialize");
    s = h_open(H.slot, 1);
    CK_ATTRIBUTE byl = { CKA_LABEL, label, strlen(label) };
    CK_ULONG n = 0;
    RV_REQ(F->C_FindObjectsInit(s, &byl, 1), CKR_OK, "C_FindObjectsInit");
    RV_EQ(F->C_FindObjects(s, &o, 1, &n), CKR_OK, "C_FindObjects");
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");
    CHECK(n == 1, "token object found after C_Finalize/C_Initialize");
    if (n != 1)
        return;
    char v[8];
    CK_ATTRIBUTE r = { CKA_VALUE, v, sizeof(v) };
    RV_EQ(F->C_GetAttributeValue(s, o, &r, 1), CKR_OK, "read its value");
    CHECK(r.ulValueLen == 4 && memcmp(v, "kept", 4) == 0, "value persisted");
    RV_EQ(F->C_DestroyObject(s, o), CKR_OK, "destroy it");
    CHECK(h_count(s, &byl, 1) == 0, "gone after C_DestroyObject");
}

static void test_find_state_errors(void)
{
    CK_SESSION_HANDLE s = h_open(H.slot, 0);
    CK_OBJECT_HANDLE o[4];
    CK_ULONG n = 0;
    RV_EQ(F->C_FindObjects(s, o, 4, &n), CKR_OPERATION_NOT_INITIALIZED,
          "C_FindObjects without C_FindObjectsInit");
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED,
          "C_FindObjectsFinal without C_FindObjectsInit");
    RV_EQ(F->C_FindObjectsInit(s, NULL, 1), CKR_ARGUMENTS_BAD, "C_FindObjectsInit(NULL, 1)");
    RV_REQ(F->C_FindObjectsInit(s, NULL, 0), CKR_OK, "C_FindObjectsInit(empty)");
    RV_EQ(F->C_FindObjectsInit(s, NULL, 0), CKR_OPERATION_ACTIVE,
          "C_FindObjectsInit while a search is active");
    RV_EQ(F->C_FindObjects(s, NULL, 4, &n), CKR_ARGUMENTS_BAD, "C_FindObjects(phObject NULL)");
    RV_EQ(F->C_FindObjects(s, o, 4, NULL), CKR_ARGUMENTS_BAD,
          "C_FindObjects(pulObjectCount NULL)");
    RV_IN2(F->C_FindObjectsFinal(s), CKR_OK, CKR_OPERATION_NOT_INITIALIZED,
           "C_FindObjectsFinal after failed calls");
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OPERATION_NOT_INITIALIZED, "C_FindObjectsFinal twice");
}

/* sec. 4.4.1 CKA_UNIQUE_ID: set by the token for every object, read-only,
 * unique. The token draws them sixteen at a time per session: more than
 * sixteen objects from each of two sessions must still all differ. */
static void test_unique_ids_are_set_read_only_and_distinct(void)
{
    enum { PER = 40 };
    CK_SESSION_HANDLE ss[2] = { h_user_session(), h_open(H.slot, 1) };
    char ids[2 * PER][33];
    size_t n = 0;
    int well_formed = 1;
    CK_OBJECT_HANDLE last = CK_INVALID_HANDLE;
    for (int i = 0; i < PER; i++) {
        for (int k = 0; k < 2; k++) {
            CK_OBJECT_CLASS cls = CKO_DATA;
            CK_ATTRIBUTE t[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_TOKEN, (i % 4 == 0) ? &h_true : &h_false, 1 },
                { CKA_LABEL, "api-uid", 7 },
            };
            CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
            RV_REQ(F->C_CreateObject(ss[k], t, NELEM(t), &o), CKR_OK, "C_CreateObject");
            char v[40] = { 0 };
            CK_ATTRIBUTE r = { CKA_UNIQUE_ID, v, sizeof(v) - 1 };
            RV_REQ(F->C_GetAttributeValue(ss[k], o, &r, 1), CKR_OK, "read CKA_UNIQUE_ID");
            well_formed &= r.ulValueLen == 32 && strspn(v, "0123456789abcdef") == 32;
            memcpy(ids[n], v, 32);
            ids[n][32] = '\0';
            n++;
            last = o;
            if (i % 4 == 0)
                RV_EQ(F->C_DestroyObject(ss[k], o), CKR_OK, "destroy the token object");
        }
    }
    CHECK(well_formed, "every CKA_UNIQUE_ID is 32 lower-case hex digits");
    int dup = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            dup |= strcmp(ids[i], ids[j]) == 0;
    CHECK(!dup, "80 objects from two sessions: 80 distinct CKA_UNIQUE_IDs");
    CK_ATTRIBUTE set = { CKA_UNIQUE_ID, "00000000000000000000000000000000", 32 };
    RV_EQ(F->C_SetAttributeValue(ss[1], last, &set, 1), CKR_ATTRIBUTE_READ_ONLY,
          "C_SetAttributeValue(CKA_UNIQUE_ID)");
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE given[] = { { CKA_CLASS, &cls, sizeof(cls) }, set };
    CK_OBJECT_HANDLE o = CK_INVALID_HANDLE;
    RV_EQ(F->C_CreateObject(ss[0], given, NELEM(given), &o), CKR_ATTRIBUTE_READ_ONLY,
          "C_CreateObject with CKA_UNIQUE_ID");
    F->C_CloseSession(ss[0]);
    F->C_CloseSession(ss[1]);
}

static void test_find_thousand_objects_in_batches_of_seven(void)
{
    enum { N = 1000 };
    static CK_OBJECT_HANDLE made[N], seen[N + 8];
    CK_SESSION_HANDLE s = h_open(H.slot, 1);
    char label[48];
    unique_label(label, sizeof(label), "api-batch");
    CK_OBJECT_CLASS cls = CKO_DATA;
    CK_ATTRIBUTE t[] = { { CKA_CLASS, &cls, sizeof(cls) }, { CKA_LABEL, label, strlen(label) } };
    for (int i = 0; i < N; i++)
        RV_REQ(F->C_CreateObject(s, t, NELEM(t), &made[i]), CKR_OK, "create object i");

    CK_ULONG total = 0, n = 0;
    int over = 0;
    RV_REQ(F->C_FindObjectsInit(s, t, NELEM(t)), CKR_OK, "C_FindObjectsInit");
    do {
        CK_OBJECT_HANDLE batch[7];
        RV_REQ(F->C_FindObjects(s, batch, 7, &n), CKR_OK, "C_FindObjects(7)");
        over |= n > 7;
        for (CK_ULONG i = 0; i < n && total < N + 8; i++)
            seen[total++] = batch[i];
    } while (n > 0 && total < N + 8);
    RV_EQ(F->C_FindObjectsFinal(s), CKR_OK, "C_FindObjectsFinal");
    CHECK(!over, "no batch larger than asked");
    CHECK(total == N, "all 1,000 objects found");
    int dup = 0, foreign = 0;
    for (CK_ULONG i = 0; i < total; i++) {
        int mine = 0;
        for (int j = 0; j < N && !mine; j++)
            mine = seen[i] == made[j];
        foreign |= !mine;
        for (CK_ULONG j = i + 1; j < total && !dup; j++)
            dup = seen[i] == seen[j];
    }
    CHECK(!dup, "no handle returned twice");
    CHECK(!foreign, "only the objects made were returned");
}

static const h_case CASES[] = {
    H_CASE(test_create_data_object),
    H_CASE(test_create_aes_key_with_value),
    H_CASE(test_create_template_errors),
    H_CASE(test_create_respects_session_and_login),
    H_CASE(test_get_attribute_value_rules),
    H_CASE(test_logout_invalidates_private_handles),
    H_CASE(test_set_attribute_value_rules),
    H_CASE(test_copy_object),
    H_CASE(test_destroy_object),
    H_CASE(test_get_object_size),
    H_CASE(test_find_by_label_class_and_id),
    H_CASE(test_find_private_only_after_login),
    H_CASE(test_find_session_objects_across_sessions),
    H_CASE(test_token_objects_persist_across_finalize),
    H_CASE(test_find_state_errors),
    H_CASE(test_find_thousand_objects_in_batches_of_seven),
    H_CASE(test_unique_ids_are_set_read_only_and_distinct),
};

int t_object_register(void)
{
    return h_add_suite("object", CASES, NELEM(CASES));
}
