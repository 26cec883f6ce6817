/* Encryption and decryption through the module: AES-GCM single- and
 * multi-part with AAD, both CK_GCM_PARAMS layouts, a GCM-spec known answer
 * through an imported key, tag lengths, authentication failures, the
 * operation-lifetime rules (size query, CKR_BUFFER_TOO_SMALL, failure ends
 * the operation, no mixing, NULL mechanism cancels) and key/mechanism
 * errors. PKCS#11 3.2 sec. 5.8, 5.9; current mechanisms, AES-GCM. */
#include "harness.h"

#include <string.h>

/* The 2.40-era layout without ulIvBits (40 bytes), which Java sends. */
typedef struct gcm_short {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_BYTE_PTR pAAD;
    CK_ULONG ulAADLen;
    CK_ULONG ulTagBits;
} gcm_short;

/* GCM specification (McGrew-Viega) test cases 4 and 16. */
static const char GCM_K128[] = "feffe9928665731c6d6a8f9467308308";
static const char GCM_K256[] =
    "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
static const char GCM_IV[] = "cafebabefacedbaddecaf888";
static const char GCM_P[] =
    "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
    "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
static const char GCM_A[] = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
static const char GCM_CT128[] =
    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
    "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
    "5bc94fbc3221a5db94fae95ae7121a47";
static const char GCM_CT256[] =
    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
    "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
    "76fc6ece0f4e1768cddf8853bb2d551b";

typedef struct fixture {
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE k;
    uint8_t iv[12], aad[20], pt[100];
} fixture;

static void fixture_open(fixture *f)
{
    f->s = h_user_session();
    f->k = h_aes_key(f->s, 32, NULL, 0);
    h_random(f->iv, sizeof(f->iv));
    h_random(f->aad, sizeof(f->aad));
    h_random(f->pt, sizeof(f->pt));
}

static CK_RV encrypt_once(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k,
                          const uint8_t *pt, CK_ULONG ptlen, uint8_t *ct, CK_ULONG *ctlen)
{
    CK_RV rv = F->C_EncryptInit(s, m, k);
    if (rv != CKR_OK)
        return rv;
    return F->C_Encrypt(s, (CK_BYTE_PTR)pt, ptlen, ct, ctlen);
}

static CK_RV decrypt_once(CK_SESSION_HANDLE s, CK_MECHANISM *m, CK_OBJECT_HANDLE k,
                          const uint8_t *ct, CK_ULONG ctlen, uint8_t *pt, CK_ULONG *ptlen)
{
    CK_RV rv = F->C_DecryptInit(s, m, k);
    if (rv != CKR_OK)
        return rv;
    return F->C_Decrypt(s, (CK_BYTE_PTR)ct, ctlen, pt, ptlen);
}

static void test_gcm_single_part_round_trip_with_aad(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t ct[160], back[160];
    CK_ULONG ctlen = sizeof(ct), backlen = sizeof(back);
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);

    RV_EQ(encrypt_once(f.s, &m, f.k, f.pt, sizeof(f.pt), ct, &ctlen), CKR_OK, "C_Encrypt(GCM)");
    CHECK(ctlen == sizeof(f.pt) + 16, "ciphertext = plaintext + 16-byte tag");
    CHECK(memcmp(ct, f.pt, sizeof(f.pt)) != 0, "ciphertext differs from plaintext");
    RV_EQ(decrypt_once(f.s, &m, f.k, ct, ctlen, back, &backlen), CKR_OK, "C_Decrypt(GCM)");
    CHECK(backlen == sizeof(f.pt) && memcmp(back, f.pt, sizeof(f.pt)) == 0,
          "GCM round trip gives the plaintext back");

    /* Empty plaintext: the output is the tag alone. */
    ctlen = sizeof(ct);
    RV_EQ(encrypt_once(f.s, &m, f.k, f.pt, 0, ct, &ctlen), CKR_OK, "C_Encrypt(empty)");
    CHECK(ctlen == 16, "empty plaintext gives a 16-byte tag");
    backlen = sizeof(back);
    RV_EQ(decrypt_once(f.s, &m, f.k, ct, ctlen, back, &backlen), CKR_OK, "C_Decrypt(tag only)");
    CHECK(backlen == 0, "tag only decrypts to nothing");
}

static void test_gcm_multi_part_matches_single_part(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t one[160], multi[200], back[200];
    CK_ULONG onelen = sizeof(one), total = 0, n;
    static const CK_ULONG cuts[] = { 1, 15, 16, 68 }; /* sums to 100 */
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);

    RV_REQ(encrypt_once(f.s, &m, f.k, f.pt, sizeof(f.pt), one, &onelen), CKR_OK,
           "single-part C_Encrypt");
    RV_REQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit");
    CK_ULONG off = 0;
    for (size_t i = 0; i < NELEM(cuts); i++) {
        n = sizeof(multi) - total;
        RV_EQ(F->C_EncryptUpdate(f.s, f.pt + off, cuts[i], multi + total, &n), CKR_OK,
              "C_EncryptUpdate");
        off += cuts[i];
        total += n;
    }
    n = sizeof(multi) - total;
    RV_EQ(F->C_EncryptFinal(f.s, multi + total, &n), CKR_OK, "C_EncryptFinal");
    total += n;
    CHECK(total == onelen && memcmp(multi, one, onelen) == 0,
          "multi-part ciphertext equals single-part");

    /* Multi-part decryption releases nothing before the tag is checked. */
    RV_REQ(F->C_DecryptInit(f.s, &m, f.k), CKR_OK, "C_DecryptInit");
    CK_ULONG got = 0, released = 0;
    off = 0;
    static const CK_ULONG dcuts[] = { 7, 50, 59 }; /* sums to 116 */
    for (size_t i = 0; i < NELEM(dcuts); i++) {
        n = sizeof(back) - got;
        RV_EQ(F->C_DecryptUpdate(f.s, one + off, dcuts[i], back + got, &n), CKR_OK,
              "C_DecryptUpdate");
        off += dcuts[i];
        got += n;
        released += n;
    }
    CHECK(released == 0, "GCM C_DecryptUpdate outputs no plaintext before the tag is checked");
    n = sizeof(back) - got;
    RV_EQ(F->C_DecryptFinal(f.s, back + got, &n), CKR_OK, "C_DecryptFinal");
    got += n;
    CHECK(got == sizeof(f.pt) && memcmp(back, f.pt, sizeof(f.pt)) == 0,
          "multi-part decryption gives the plaintext");
}

static void test_gcm_both_param_layouts_same_ciphertext(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t a[160], b[160], back[160];
    CK_ULONG alen = sizeof(a), blen = sizeof(b), backlen = sizeof(back);
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);
    CHECK(sizeof(CK_GCM_PARAMS) == 48 && sizeof(gcm_short) == 40, "layout sizes 48 and 40");
    RV_EQ(encrypt_once(f.s, &m, f.k, f.pt, sizeof(f.pt), a, &alen), CKR_OK,
          "C_Encrypt with the 48-byte CK_GCM_PARAMS");

    gcm_short q = { f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128 };
    CK_MECHANISM mq = { CKM_AES_GCM, &q, sizeof(q) };
    RV_EQ(encrypt_once(f.s, &mq, f.k, f.pt, sizeof(f.pt), b, &blen), CKR_OK,
          "C_Encrypt with the 40-byte layout");
    CHECK(alen == blen && memcmp(a, b, alen) == 0, "both layouts give the same ciphertext");
    RV_EQ(decrypt_once(f.s, &mq, f.k, a, alen, back, &backlen), CKR_OK,
          "C_Decrypt with the 40-byte layout");
    CHECK(backlen == sizeof(f.pt) && memcmp(back, f.pt, backlen) == 0, "round trip");

    /* ulIvBits is informational only. */
    p.ulIvBits = 0;
    blen = sizeof(b);
    RV_EQ(encrypt_once(f.s, &m, f.k, f.pt, sizeof(f.pt), b, &blen), CKR_OK,
          "C_Encrypt with ulIvBits 0");
    CHECK(blen == alen && memcmp(a, b, alen) == 0, "ulIvBits does not change the output");

    CK_MECHANISM odd = { CKM_AES_GCM, &p, 44 };
    RV_EQ(F->C_EncryptInit(f.s, &odd, f.k), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptInit(GCM, ulParameterLen 44)");
}

static void known_answer(const char *khex, const char *cthex)
{
    CK_SESSION_HANDLE s = h_user_session();
    uint8_t key[32], iv[12], pt[64], aad[20], want[96], ct[96], back[96];
    size_t klen = h_unhex(khex, key, sizeof(key));
    h_unhex(GCM_IV, iv, sizeof(iv));
    size_t ptlen = h_unhex(GCM_P, pt, sizeof(pt));
    size_t aadlen = h_unhex(GCM_A, aad, sizeof(aad));
    size_t wantlen = h_unhex(cthex, want, sizeof(want));
    CK_ATTRIBUTE use[] = { { CKA_ENCRYPT, &h_true, 1 }, { CKA_DECRYPT, &h_true, 1 } };
    CK_OBJECT_HANDLE k = h_import_key(s, CKK_AES, key, klen, use, NELEM(use));
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    CK_ULONG ctlen = sizeof(ct), backlen = sizeof(back);
    h_gcm(&p, &m, iv, sizeof(iv), aad, aadlen, 128);
    RV_EQ(encrypt_once(s, &m, k, pt, ptlen, ct, &ctlen), CKR_OK, "C_Encrypt(known answer)");
    CHECK(ctlen == wantlen && memcmp(ct, want, wantlen) == 0,
          "GCM ciphertext || tag equals the published vector");
    RV_EQ(decrypt_once(s, &m, k, want, wantlen, back, &backlen), CKR_OK,
          "C_Decrypt(published vector)");
    CHECK(backlen == ptlen && memcmp(back, pt, ptlen) == 0, "published vector decrypts");
}

static void test_gcm_known_answer_aes128(void)
{
    known_answer(GCM_K128, GCM_CT128);
}

static void test_gcm_known_answer_aes256(void)
{
    known_answer(GCM_K256, GCM_CT256);
}

static void test_gcm_tag_lengths(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t full[160], ct[160], back[160];
    CK_ULONG fulllen = sizeof(full);
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);
    RV_REQ(encrypt_once(f.s, &m, f.k, f.pt, sizeof(f.pt), full, &fulllen), CKR_OK,
           "C_Encrypt(tag 128)");
    for (CK_ULONG bits = 96; bits <= 128; bits += 8) {
        CK_ULONG ctlen = sizeof(ct), backlen = sizeof(back);
        p.ulTagBits = bits;
        RV_EQ(encrypt_once(f.s, &m, f.k, f.pt, sizeof(f.pt), ct, &ctlen), CKR_OK,
              "C_Encrypt(tag 96..128 bits)");
        CHECK(ctlen == sizeof(f.pt) + bits / 8, "output = plaintext + tag bytes");
        CHECK(memcmp(ct, full, ctlen) == 0, "a short tag is a prefix of the full tag");
        RV_EQ(decrypt_once(f.s, &m, f.k, ct, ctlen, back, &backlen), CKR_OK,
              "C_Decrypt(tag 96..128 bits)");
        CHECK(backlen == sizeof(f.pt) && memcmp(back, f.pt, backlen) == 0, "round trip");
    }
    static const CK_ULONG bad[] = { 0, 32, 64, 88, 100, 136 };
    for (size_t i = 0; i < NELEM(bad); i++) {
        p.ulTagBits = bad[i];
        RV_EQ(F->C_EncryptInit(f.s, &m, f.k), CKR_MECHANISM_PARAM_INVALID,
              "C_EncryptInit(tag length outside 96..128 or not a byte multiple)");
    }
}

static void test_gcm_authentication_failures(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t ct[160], bad[160], out[160];
    CK_ULONG ctlen = sizeof(ct), outlen;
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);
    RV_REQ(encrypt_once(f.s, &m, f.k, f.pt, sizeof(f.pt), ct, &ctlen), CKR_OK, "C_Encrypt");

    memcpy(bad, ct, ctlen);
    bad[ctlen - 1] ^= 0x01;
    memset(out, 0xa5, sizeof(out));
    outlen = sizeof(out);
    RV_EQ(decrypt_once(f.s, &m, f.k, bad, ctlen, out, &outlen), CKR_ENCRYPTED_DATA_INVALID,
          "C_Decrypt with a wrong tag");
    CHECK(memcmp(out, f.pt, 16) != 0, "no plaintext released on a wrong tag");
    outlen = sizeof(out);
    RV_EQ(F->C_Decrypt(f.s, ct, ctlen, out, &outlen), CKR_OPERATION_NOT_INITIALIZED,
          "the failed C_Decrypt ended the operation");

    memcpy(bad, ct, ctlen);
    bad[3] ^= 0x80;
    outlen = sizeof(out);
    memset(out, 0xa5, sizeof(out));
    RV_EQ(decrypt_once(f.s, &m, f.k, bad, ctlen, out, &outlen), CKR_ENCRYPTED_DATA_INVALID,
          "C_Decrypt with a flipped ciphertext bit");
    CHECK(memcmp(out + 4, f.pt + 4, 16) != 0, "no plaintext released on a bad ciphertext");

    uint8_t aad2[20];
    memcpy(aad2, f.aad, sizeof(aad2));
    aad2[0] ^= 1;
    CK_GCM_PARAMS p2;
    CK_MECHANISM m2;
    h_gcm(&p2, &m2, f.iv, sizeof(f.iv), aad2, sizeof(aad2), 128);
    outlen = sizeof(out);
    memset(out, 0xa5, sizeof(out));
    RV_EQ(decrypt_once(f.s, &m2, f.k, ct, ctlen, out, &outlen), CKR_ENCRYPTED_DATA_INVALID,
          "C_Decrypt with a wrong AAD");
    CHECK(memcmp(out, f.pt, 16) != 0, "no plaintext released on a wrong AAD");

    outlen = sizeof(out);
    RV_IN2(decrypt_once(f.s, &m, f.k, ct, 15, out, &outlen), CKR_ENCRYPTED_DATA_LEN_RANGE,
           CKR_ENCRYPTED_DATA_INVALID, "C_Decrypt of 15 bytes (shorter than the tag)");
    outlen = sizeof(out);
    RV_EQ(decrypt_once(f.s, &m, f.k, ct, ctlen - 1, out, &outlen), CKR_ENCRYPTED_DATA_INVALID,
          "C_Decrypt of a truncated ciphertext");

    /* Multi-part: the tag is checked at C_DecryptFinal. */
    RV_REQ(F->C_DecryptInit(f.s, &m, f.k), CKR_OK, "C_DecryptInit");
    memcpy(bad, ct, ctlen);
    bad[ctlen - 5] ^= 0x10;
    CK_ULONG n = sizeof(out), released = 0;
    RV_EQ(F->C_DecryptUpdate(f.s, bad, ctlen, out, &n), CKR_OK, "C_DecryptUpdate");
    released += n;
    n = sizeof(out) - released;
    RV_EQ(F->C_DecryptFinal(f.s, out + released, &n), CKR_ENCRYPTED_DATA_INVALID,
          "C_DecryptFinal with a wrong tag");
    CHECK(released == 0, "nothing released by C_DecryptUpdate");
    n = sizeof(out);
    RV_EQ(F->C_DecryptFinal(f.s, out, &n), CKR_OPERATION_NOT_INITIALIZED,
          "the failed C_DecryptFinal ended the operation");
}

static void test_size_query_and_short_buffer_keep_operation(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t ct[160], back[160];
    CK_ULONG len = 0;
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);

    RV_REQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit");
    RV_EQ(F->C_Encrypt(f.s, f.pt, sizeof(f.pt), NULL, &len), CKR_OK, "C_Encrypt size query");
    CHECK(len == sizeof(f.pt) + 16, "size query gives plaintext + tag");
    len = 5;
    RV_EQ(F->C_Encrypt(f.s, f.pt, sizeof(f.pt), ct, &len), CKR_BUFFER_TOO_SMALL,
          "C_Encrypt into 5 bytes");
    CHECK(len == sizeof(f.pt) + 16, "CKR_BUFFER_TOO_SMALL gives the size");
    len = sizeof(ct);
    RV_EQ(F->C_Encrypt(f.s, f.pt, sizeof(f.pt), ct, &len), CKR_OK,
          "C_Encrypt still works after the size query and the short buffer");
    CK_ULONG ctlen = len;
    len = sizeof(back);
    RV_EQ(F->C_Encrypt(f.s, f.pt, sizeof(f.pt), back, &len), CKR_OPERATION_NOT_INITIALIZED,
          "a completed C_Encrypt ends the operation");

    RV_REQ(F->C_DecryptInit(f.s, &m, f.k), CKR_OK, "C_DecryptInit");
    len = 0;
    RV_EQ(F->C_Decrypt(f.s, ct, ctlen, NULL, &len), CKR_OK, "C_Decrypt size query");
    CHECK(len >= sizeof(f.pt), "decrypt size query is at least the plaintext length");
    len = 3;
    RV_EQ(F->C_Decrypt(f.s, ct, ctlen, back, &len), CKR_BUFFER_TOO_SMALL, "C_Decrypt into 3 bytes");
    CHECK(len >= sizeof(f.pt), "CKR_BUFFER_TOO_SMALL gives a sufficient size");
    len = sizeof(back);
    RV_EQ(F->C_Decrypt(f.s, ct, ctlen, back, &len), CKR_OK, "C_Decrypt after the short buffer");
    CHECK(len == sizeof(f.pt) && memcmp(back, f.pt, len) == 0, "plaintext back");

    /* Same for C_EncryptFinal. */
    RV_REQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit");
    len = sizeof(ct);
    RV_EQ(F->C_EncryptUpdate(f.s, f.pt, sizeof(f.pt), ct, &len), CKR_OK, "C_EncryptUpdate");
    CK_ULONG fin = 0;
    RV_EQ(F->C_EncryptFinal(f.s, NULL, &fin), CKR_OK, "C_EncryptFinal size query");
    CHECK(fin >= 16, "final size includes the tag");
    CK_ULONG tiny = 1;
    RV_EQ(F->C_EncryptFinal(f.s, ct + len, &tiny), CKR_BUFFER_TOO_SMALL, "C_EncryptFinal into 1 byte");
    fin = sizeof(ct) - len;
    RV_EQ(F->C_EncryptFinal(f.s, ct + len, &fin), CKR_OK, "C_EncryptFinal");
}

static void test_failure_ends_operation(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t ct[160];
    CK_ULONG len = sizeof(ct);
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);

    RV_REQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit");
    RV_EQ(F->C_Encrypt(f.s, NULL, 16, ct, &len), CKR_ARGUMENTS_BAD, "C_Encrypt(pData NULL, 16)");
    len = sizeof(ct);
    RV_EQ(F->C_Encrypt(f.s, f.pt, 16, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_Encrypt after a failed C_Encrypt");
    RV_REQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit");
    RV_EQ(F->C_Encrypt(f.s, f.pt, 16, ct, NULL), CKR_ARGUMENTS_BAD,
          "C_Encrypt(pulEncryptedDataLen NULL)");
    len = sizeof(ct);
    RV_EQ(F->C_Encrypt(f.s, f.pt, 16, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "operation ended by the failed call");
    RV_REQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit");
    RV_EQ(F->C_EncryptUpdate(f.s, f.pt, 16, ct, NULL), CKR_ARGUMENTS_BAD,
          "C_EncryptUpdate(pulEncryptedPartLen NULL)");
    len = sizeof(ct);
    RV_EQ(F->C_EncryptUpdate(f.s, f.pt, 16, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "operation ended by the failed C_EncryptUpdate");
    RV_REQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit");
    len = sizeof(ct);
    RV_EQ(F->C_EncryptUpdate(f.s, f.pt, 16, ct, &len), CKR_OK, "C_EncryptUpdate");
    RV_EQ(F->C_EncryptFinal(f.s, ct, NULL), CKR_ARGUMENTS_BAD, "C_EncryptFinal(NULL length)");
    len = sizeof(ct);
    RV_EQ(F->C_EncryptFinal(f.s, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "operation ended by the failed C_EncryptFinal");

    RV_REQ(F->C_DecryptInit(f.s, &m, f.k), CKR_OK, "C_DecryptInit");
    RV_EQ(F->C_Decrypt(f.s, ct, 32, ct, NULL), CKR_ARGUMENTS_BAD, "C_Decrypt(pulDataLen NULL)");
    len = sizeof(ct);
    RV_EQ(F->C_Decrypt(f.s, ct, 32, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "decryption ended by the failed call");
    RV_REQ(F->C_DecryptInit(f.s, &m, f.k), CKR_OK, "C_DecryptInit");
    RV_EQ(F->C_DecryptUpdate(f.s, NULL, 16, ct, &len), CKR_ARGUMENTS_BAD,
          "C_DecryptUpdate(pEncryptedPart NULL, 16)");
    RV_EQ(F->C_DecryptFinal(f.s, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "decryption ended by the failed C_DecryptUpdate");

    len = sizeof(ct);
    RV_EQ(F->C_EncryptUpdate(f.s, f.pt, 16, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_EncryptUpdate without C_EncryptInit");
    RV_EQ(F->C_EncryptFinal(f.s, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_EncryptFinal without C_EncryptInit");
    RV_EQ(F->C_DecryptUpdate(f.s, ct, 16, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_DecryptUpdate without C_DecryptInit");
    RV_EQ(F->C_DecryptFinal(f.s, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_DecryptFinal without C_DecryptInit");
}

static void test_single_part_after_update_is_refused(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t ct[160];
    CK_ULONG len = sizeof(ct);
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);

    RV_REQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit");
    RV_EQ(F->C_EncryptUpdate(f.s, f.pt, 32, ct, &len), CKR_OK, "C_EncryptUpdate");
    len = sizeof(ct);
    RV_EQ(F->C_Encrypt(f.s, f.pt, 32, ct, &len), CKR_OPERATION_ACTIVE,
          "C_Encrypt after C_EncryptUpdate");
    len = sizeof(ct);
    RV_EQ(F->C_EncryptUpdate(f.s, f.pt, 32, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "the refused C_Encrypt ended the operation");

    RV_REQ(F->C_DecryptInit(f.s, &m, f.k), CKR_OK, "C_DecryptInit");
    len = sizeof(ct);
    RV_EQ(F->C_DecryptUpdate(f.s, ct, 32, ct + 64, &len), CKR_OK, "C_DecryptUpdate");
    len = sizeof(ct);
    RV_EQ(F->C_Decrypt(f.s, ct, 48, ct + 64, &len), CKR_OPERATION_ACTIVE,
          "C_Decrypt after C_DecryptUpdate");
}

static void test_init_twice_and_null_mechanism_cancels(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    uint8_t ct[160];
    CK_ULONG len = sizeof(ct);
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);

    RV_REQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit");
    RV_EQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OPERATION_ACTIVE, "C_EncryptInit twice");
    /* PKCS#11 3.x sec. 5.8: C_EncryptInit with pMechanism NULL terminates
     * an active encryption operation. */
    RV_EQ(F->C_EncryptInit(f.s, NULL, f.k), CKR_OK, "C_EncryptInit(NULL) cancels");
    RV_EQ(F->C_Encrypt(f.s, f.pt, 16, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_Encrypt after the cancel");
    RV_EQ(F->C_EncryptInit(f.s, &m, f.k), CKR_OK, "C_EncryptInit after the cancel");

    RV_REQ(F->C_DecryptInit(f.s, &m, f.k), CKR_OK, "C_DecryptInit");
    RV_EQ(F->C_DecryptInit(f.s, &m, f.k), CKR_OPERATION_ACTIVE, "C_DecryptInit twice");
    RV_EQ(F->C_DecryptInit(f.s, NULL, f.k), CKR_OK, "C_DecryptInit(NULL) cancels");
    len = sizeof(ct);
    RV_EQ(F->C_Decrypt(f.s, ct, 32, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "C_Decrypt after the cancel");
    len = sizeof(ct);
    RV_EQ(F->C_Encrypt(f.s, f.pt, 16, ct, &len), CKR_OK,
          "encryption unaffected by cancelling decryption");
}

static void test_key_and_mechanism_errors(void)
{
    fixture f;
    fixture_open(&f);
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    h_gcm(&p, &m, f.iv, sizeof(f.iv), f.aad, sizeof(f.aad), 128);

    CK_ATTRIBUTE dec_only[] = { { CKA_ENCRYPT, &h_false, 1 }, { CKA_DECRYPT, &h_true, 1 } };
    uint8_t kb[32];
    h_random(kb, sizeof(kb));
    CK_OBJECT_HANDLE nd = h_import_key(f.s, CKK_AES, kb, 32, dec_only, NELEM(dec_only));
    RV_EQ(F->C_EncryptInit(f.s, &m, nd), CKR_KEY_FUNCTION_NOT_PERMITTED,
          "C_EncryptInit with a key without CKA_ENCRYPT");
    CK_ATTRIBUTE enc_only[] = { { CKA_ENCRYPT, &h_true, 1 } };
    CK_OBJECT_HANDLE ne = h_import_key(f.s, CKK_AES, kb, 32, enc_only, NELEM(enc_only));
    RV_EQ(F->C_DecryptInit(f.s, &m, ne), CKR_KEY_FUNCTION_NOT_PERMITTED,
          "C_DecryptInit with a key without CKA_DECRYPT");
    CK_ATTRIBUTE gen_use[] = { { CKA_ENCRYPT, &h_true, 1 }, { CKA_DECRYPT, &h_true, 1 } };
    CK_OBJECT_HANDLE g = h_import_key(f.s, CKK_GENERIC_SECRET, kb, 32, gen_use, NELEM(gen_use));
    RV_EQ(F->C_EncryptInit(f.s, &m, g), CKR_KEY_TYPE_INCONSISTENT,
          "C_EncryptInit(GCM) with a generic secret");
    RV_EQ(F->C_EncryptInit(f.s, &m, H_BAD_OBJECT), CKR_KEY_HANDLE_INVALID,
          "C_EncryptInit(bad key handle)");
    RV_EQ(F->C_DecryptInit(f.s, &m, H_BAD_OBJECT), CKR_KEY_HANDLE_INVALID,
          "C_DecryptInit(bad key handle)");

    CK_MECHANISM nullp = { CKM_AES_GCM, NULL, 0 };
    RV_EQ(F->C_EncryptInit(f.s, &nullp, f.k), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptInit(GCM without parameters)");
    CK_GCM_PARAMS q = p;
    q.ulIvLen = 0;
    CK_MECHANISM mq = { CKM_AES_GCM, &q, sizeof(q) };
    RV_EQ(F->C_EncryptInit(f.s, &mq, f.k), CKR_MECHANISM_PARAM_INVALID, "C_EncryptInit(IV length 0)");
    q = p;
    q.pIv = NULL;
    RV_EQ(F->C_EncryptInit(f.s, &mq, f.k), CKR_MECHANISM_PARAM_INVALID, "C_EncryptInit(pIv NULL)");
    q = p;
    q.pAAD = NULL;
    RV_EQ(F->C_EncryptInit(f.s, &mq, f.k), CKR_MECHANISM_PARAM_INVALID,
          "C_EncryptInit(pAAD NULL with ulAADLen 20)");

    CK_MECHANISM unknown = { 0x7ffffff0UL, NULL, 0 };
    RV_EQ(F->C_EncryptInit(f.s, &unknown, f.k), CKR_MECHANISM_INVALID,
          "C_EncryptInit(unknown mechanism)");
    uint8_t iv16[16] = { 0 };
    CK_MECHANISM cbc = { CKM_AES_CBC_PAD, iv16, sizeof(iv16) };
    RV_EQ(F->C_EncryptInit(f.s, &cbc, f.k), CKR_MECHANISM_INVALID,
          "C_EncryptInit(AES-CBC-PAD) refused by default");
    CK_MECHANISM cbc2 = { CKM_AES_CBC, iv16, sizeof(iv16) };
    RV_EQ(F->C_DecryptInit(f.s, &cbc2, f.k), CKR_MECHANISM_INVALID,
          "C_DecryptInit(AES-CBC) refused by default");
    CK_MECHANISM ecb = { CKM_AES_ECB, NULL, 0 };
    RV_EQ(F->C_EncryptInit(f.s, &ecb, f.k), CKR_MECHANISM_INVALID,
          "C_EncryptInit(AES-ECB) refused by default");
    CK_MECHANISM sha = { CKM_SHA256, NULL, 0 };
    RV_EQ(F->C_EncryptInit(f.s, &sha, f.k), CKR_MECHANISM_INVALID, "C_EncryptInit(CKM_SHA256)");

    uint8_t ct[64];
    CK_ULONG len = sizeof(ct);
    RV_EQ(F->C_Encrypt(f.s, f.pt, 16, ct, &len), CKR_OPERATION_NOT_INITIALIZED,
          "no operation was started by the refused inits");
}

static void test_dual_and_message_functions(void)
{
    CK_SESSION_HANDLE s = h_user_session();
    uint8_t in[32] = { 0 }, out[64];
    CK_ULONG len = sizeof(out);
    RV_IN2(F->C_DigestEncryptUpdate(s, in, 16, out, &len), CKR_FUNCTION_NOT_SUPPORTED,
           CKR_OPERATION_NOT_INITIALIZED, "C_DigestEncryptUpdate without operations");
    RV_IN2(F->C_DecryptDigestUpdate(s, in, 16, out, &len), CKR_FUNCTION_NOT_SUPPORTED,
           CKR_OPERATION_NOT_INITIALIZED, "C_DecryptDigestUpdate without operations");
    RV_IN2(F->C_SignEncryptUpdate(s, in, 16, out, &len), CKR_FUNCTION_NOT_SUPPORTED,
           CKR_OPERATION_NOT_INITIALIZED, "C_SignEncryptUpdate without operations");
    RV_IN2(F->C_DecryptVerifyUpdate(s, in, 16, out, &len), CKR_FUNCTION_NOT_SUPPORTED,
           CKR_OPERATION_NOT_INITIALIZED, "C_DecryptVerifyUpdate without operations");

    CK_OBJECT_HANDLE k = h_aes_key(s, 32, NULL, 0);
    uint8_t iv[12] = { 0 };
    CK_GCM_PARAMS p;
    CK_MECHANISM m;
    h_gcm(&p, &m, iv, sizeof(iv), NULL, 0, 128);
    /* Message-based encryption exists (t_message.c); message-based signing
     * does not, and ending a context that was never begun is an error. */
    RV_EQ(F30->C_MessageSignInit(s, &m, k), CKR_FUNCTION_NOT_SUPPORTED, "C_MessageSignInit");
    RV_EQ(F30->C_MessageVerifyInit(s, &m, k), CKR_FUNCTION_NOT_SUPPORTED, "C_MessageVerifyInit");
    RV_EQ(F30->C_MessageEncryptFinal(s), CKR_OPERATION_NOT_INITIALIZED, "C_MessageEncryptFinal without init");
    RV_EQ(F30->C_MessageDecryptFinal(s), CKR_OPERATION_NOT_INITIALIZED, "C_MessageDecryptFinal without init");
}

static const h_case CASES[] = {
    H_CASE(test_gcm_single_part_round_trip_with_aad),
    H_CASE(test_gcm_multi_part_matches_single_part),
    H_CASE(test_gcm_both_param_layouts_same_ciphertext),
    H_CASE(test_gcm_known_answer_aes128),
    H_CASE(test_gcm_known_answer_aes256),
    H_CASE(test_gcm_tag_lengths),
    H_CASE(test_gcm_authentication_failures),
    H_CASE(test_size_query_and_short_buffer_keep_operation),
    H_CASE(test_failure_ends_operation),
    H_CASE(test_single_part_after_update_is_refused),
    H_CASE(test_init_twice_and_null_mechanism_cancels),
    H_CASE(test_key_and_mechanism_errors),
    H_CASE(test_dual_and_message_functions),
};

int t_cipher_register(void)
{
    return h_add_suite("cipher", CASES, NELEM(CASES));
}
