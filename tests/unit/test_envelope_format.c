/* Unit tests of the envelope byte format (src/envelope/format.c): header and
 * DEK-file round trips, the text form, the body layout rule, and one negative
 * case for each way an input can be malformed. No token is involved. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>

#include "cunit_main.h"
#include "envelope/internal.h"

#define CTX "tenant=42,table=users,column=ssn"
#define FAM "payroll"

static const uint8_t NONCE[12] = { 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xA5, 0xA6, 0xA7, 0xA8, 0xA9, 0xAA, 0xAB };

static void sample_kb(env_kb *kb)
{
    memset(kb, 0, sizeof(*kb));
    memcpy(kb->family, FAM, strlen(FAM));
    kb->fam_len = strlen(FAM);
    kb->kek_version = 7;
    kb->wrap_mech = CKM_AES_KEY_WRAP_KWP;
    kb->wdek_len = 40;
    for (size_t i = 0; i < kb->wdek_len; i++)
        kb->wdek[i] = (uint8_t)(0xD0 ^ i);
    memset(kb->kb_nonce, 0x5C, sizeof(kb->kb_nonce));
    memset(kb->kb_tag, 0x7A, sizeof(kb->kb_tag));
}

/* A complete header (data header + key block) for CTX/FAM; returns its length. */
static size_t sample_header(uint8_t *out, size_t cap, size_t *data_len)
{
    env_kb kb;
    size_t dl, kl, al;
    sample_kb(&kb);
    CU_ASSERT_FATAL(env_data_hdr_encode(ENV_AEAD_AES256_GCM, 16, NONCE, (const uint8_t *)CTX,
                                        strlen(CTX), out, cap, &dl) == ENV_OK);
    CU_ASSERT_FATAL(env_kb_encode(&kb, out + dl, cap - dl, &kl, &al) == ENV_OK);
    if (data_len != NULL)
        *data_len = dl;
    return dl + kl;
}

static env_rv parse(const uint8_t *p, size_t n, const char **field)
{
    env_hdr h;
    return env_hdr_parse(p, n, &h, field);
}

/* Offsets in the sample header (AES-GCM, 12-byte nonce). */
#define OFF_VERSION 4
#define OFF_AEAD 5
#define OFF_SHIFT 6
#define OFF_FLAGS 7
#define OFF_CTXLEN 20
#define OFF_FAMLEN (22 + strlen(CTX))
#define OFF_MECH (OFF_FAMLEN + 2 + strlen(FAM) + 4)
#define OFF_WDEKLEN (OFF_MECH + 4)

static void test_header_round_trip_keeps_every_field(void)
{
    uint8_t b[ENV_HEADER_MAX + 64];
    size_t dl;
    size_t n = sample_header(b, sizeof(b), &dl);
    memset(b + n, 0xEE, 64); /* body bytes after the header are not the header's */
    env_hdr h;
    const char *field = NULL;
    CU_ASSERT_EQUAL_FATAL(env_hdr_parse(b, n + 64, &h, &field), ENV_OK);
    CU_ASSERT_EQUAL(h.header_len, n);
    CU_ASSERT_EQUAL(h.data_len, dl);
    CU_ASSERT_EQUAL(h.aead, ENV_AEAD_AES256_GCM);
    CU_ASSERT_EQUAL(h.chunk_shift, 16);
    CU_ASSERT_EQUAL(h.nonce_len, 12);
    CU_ASSERT(memcmp(h.nonce_base, NONCE, 12) == 0);
    CU_ASSERT_EQUAL(h.ctx_len, strlen(CTX));
    CU_ASSERT(memcmp(h.context, CTX, h.ctx_len) == 0);
    env_kb want;
    sample_kb(&want);
    CU_ASSERT_EQUAL(h.kb.fam_len, want.fam_len);
    CU_ASSERT(memcmp(h.kb.family, FAM, want.fam_len) == 0);
    CU_ASSERT_EQUAL(h.kb.kek_version, 7);
    CU_ASSERT_EQUAL(h.kb.wrap_mech, CKM_AES_KEY_WRAP_KWP);
    CU_ASSERT_EQUAL(h.kb.wdek_len, 40);
    CU_ASSERT(memcmp(h.kb.wdek, want.wdek, 40) == 0);
    CU_ASSERT(memcmp(h.kb.kb_nonce, want.kb_nonce, 12) == 0);
    CU_ASSERT(memcmp(h.kb.kb_tag, want.kb_tag, 16) == 0);
}

static void test_header_with_empty_context_and_family_round_trips(void)
{
    uint8_t b[ENV_HEADER_MAX];
    env_kb kb;
    size_t dl, kl, al;
    sample_kb(&kb);
    kb.fam_len = 0;
    kb.kek_version = 0;
    kb.wrap_mech = CKM_AES_KEY_WRAP;
    CU_ASSERT_FATAL(env_data_hdr_encode(ENV_AEAD_AES256_GCM, 10, NONCE, NULL, 0, b, sizeof(b), &dl) ==
                    ENV_OK);
    CU_ASSERT_FATAL(env_kb_encode(&kb, b + dl, sizeof(b) - dl, &kl, &al) == ENV_OK);
    env_hdr h;
    CU_ASSERT_EQUAL(env_hdr_parse(b, dl + kl, &h, NULL), ENV_OK);
    CU_ASSERT_EQUAL(h.ctx_len, 0);
    CU_ASSERT_EQUAL(h.kb.fam_len, 0);
    CU_ASSERT_EQUAL(h.chunk_shift, 10);
    CU_ASSERT_EQUAL(h.kb.wrap_mech, CKM_AES_KEY_WRAP);
}

static void test_largest_header_fits_header_max(void)
{
    uint8_t b[ENV_HEADER_MAX];
    uint8_t ctx[ENV_CONTEXT_MAX], nonce[24] = { 0 };
    env_kb kb;
    size_t dl, kl, al;
    sample_kb(&kb);
    memset(ctx, 'c', sizeof(ctx));
    memset(kb.family, 'f', ENV_FAMILY_MAX);
    kb.fam_len = ENV_FAMILY_MAX;
    kb.wdek_len = ENV_WDEK_MAX;
    CU_ASSERT_FATAL(env_data_hdr_encode(ENV_AEAD_XCHACHA20_POLY1305, 20, nonce, ctx, sizeof(ctx), b,
                                        sizeof(b), &dl) == ENV_OK);
    CU_ASSERT_FATAL(env_kb_encode(&kb, b + dl, sizeof(b) - dl, &kl, &al) == ENV_OK);
    CU_ASSERT_EQUAL(dl + kl, 1865);
    env_hdr h;
    CU_ASSERT_EQUAL(env_hdr_parse(b, dl + kl, &h, NULL), ENV_OK);
    CU_ASSERT_EQUAL(h.nonce_len, 24);
}

static void test_every_truncated_header_is_rejected_as_truncated(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    for (size_t cut = 0; cut < n; cut++) {
        const char *field = NULL;
        env_rv rv = parse(b, cut, &field);
        CU_ASSERT_EQUAL(rv, ENV_E_TRUNCATED);
        CU_ASSERT_PTR_NOT_NULL(field);
    }
    CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_OK);
}

static void test_bad_magic_is_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    for (size_t i = 0; i < 4; i++) {
        b[i] ^= 0x20;
        CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_E_MAGIC);
        /* Garbage is recognised from its first byte, not after waiting. */
        CU_ASSERT_EQUAL(parse(b, i + 1, NULL), ENV_E_MAGIC);
        b[i] ^= 0x20;
    }
    const uint8_t dek_magic[] = "CUSK\x01";
    CU_ASSERT_EQUAL(parse(dek_magic, 5, NULL), ENV_E_MAGIC);
}

static void test_unknown_version_is_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    const uint8_t bad[] = { 0, 2, 0x7F, 0xFF };
    for (size_t i = 0; i < sizeof(bad); i++) {
        const char *field = NULL;
        b[OFF_VERSION] = bad[i];
        CU_ASSERT_EQUAL(parse(b, n, &field), ENV_E_VERSION);
        CU_ASSERT_STRING_EQUAL(field, "version");
    }
}

static void test_unknown_aead_is_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    const uint8_t bad[] = { 0, 3, 0xFF };
    for (size_t i = 0; i < sizeof(bad); i++) {
        b[OFF_AEAD] = bad[i];
        CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_E_ALGORITHM);
    }
}

static void test_chunk_shift_out_of_range_is_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    const uint8_t bad[] = { 0, 9, 21, 64, 255 };
    for (size_t i = 0; i < sizeof(bad); i++) {
        b[OFF_SHIFT] = bad[i];
        CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_E_FIELD);
    }
    b[OFF_SHIFT] = 20;
    CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_OK);
}

static void test_nonzero_flags_are_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    b[OFF_FLAGS] = 1;
    CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_E_FIELD);
    b[OFF_FLAGS] = 0x80;
    CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_E_FIELD);
}

static void test_oversized_context_length_is_rejected_without_waiting(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    const char *field = NULL;
    be_put(b + OFF_CTXLEN, ENV_CONTEXT_MAX + 1, 2);
    CU_ASSERT_EQUAL(parse(b, n, &field), ENV_E_FIELD);
    CU_ASSERT_STRING_EQUAL(field, "ctx_len");
    /* Decided from the length field alone: a stream reader need not wait. */
    CU_ASSERT_EQUAL(parse(b, OFF_CTXLEN + 2, NULL), ENV_E_FIELD);
    be_put(b + OFF_CTXLEN, 0xFFFF, 2);
    CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_E_FIELD);
}

static void test_length_fields_pointing_past_the_end_are_truncated(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    const char *field = NULL;
    /* Context length within its limit but beyond the bytes present. */
    be_put(b + OFF_CTXLEN, 1000, 2);
    CU_ASSERT_EQUAL(parse(b, n, &field), ENV_E_TRUNCATED);
    CU_ASSERT_STRING_EQUAL(field, "context");
    n = sample_header(b, sizeof(b), NULL);
    be_put(b + OFF_WDEKLEN, ENV_WDEK_MAX, 2);
    CU_ASSERT_EQUAL(parse(b, n, &field), ENV_E_TRUNCATED);
    CU_ASSERT_STRING_EQUAL(field, "wrapped_dek");
}

static void test_control_characters_in_context_are_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    const uint8_t bad[] = { 0x00, 0x0A, 0x1B, 0x7F };
    for (size_t i = 0; i < sizeof(bad); i++) {
        const char *field = NULL;
        b[OFF_CTXLEN + 2 + 3] = bad[i];
        CU_ASSERT_EQUAL(parse(b, n, &field), ENV_E_FIELD);
        CU_ASSERT_STRING_EQUAL(field, "context");
    }
    uint8_t dummy[16];
    size_t dl;
    CU_ASSERT_EQUAL(env_data_hdr_encode(ENV_AEAD_AES256_GCM, 16, NONCE, (const uint8_t *)"a\nb", 3,
                                        dummy, sizeof(dummy), &dl),
                    ENV_E_FIELD);
}

static void test_oversized_family_length_is_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    const char *field = NULL;
    be_put(b + OFF_FAMLEN, ENV_FAMILY_MAX + 1, 2);
    CU_ASSERT_EQUAL(parse(b, n, &field), ENV_E_FIELD);
    CU_ASSERT_STRING_EQUAL(field, "fam_len");
}

static void test_bad_wrapped_dek_lengths_are_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    const unsigned bad[] = { 0, 8, 15, 41, ENV_WDEK_MAX + 8, 0xFFFF };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        size_t n = sample_header(b, sizeof(b), NULL);
        be_put(b + OFF_WDEKLEN, bad[i], 2);
        CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_E_FIELD);
    }
}

static void test_unknown_wrap_mechanism_is_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    const uint32_t bad[] = { 0, CKM_AES_GCM, 0x210C, 0x80000000 };
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        const char *field = NULL;
        be_put(b + OFF_MECH, bad[i], 4);
        CU_ASSERT_EQUAL(parse(b, n, &field), ENV_E_ALGORITHM);
        CU_ASSERT_STRING_EQUAL(field, "wrap_mech");
    }
    be_put(b + OFF_MECH, CKM_AES_KEY_WRAP_PAD, 4);
    CU_ASSERT_EQUAL(parse(b, n, NULL), ENV_OK);
}

static void test_dek_file_round_trip_and_trailing_bytes_rejected(void)
{
    env_kb kb, back;
    uint8_t *d = NULL;
    size_t n = 0;
    sample_kb(&kb);
    CU_ASSERT_FATAL(env_dek_encode(&kb, &d, &n) == ENV_OK);
    CU_ASSERT(memcmp(d, "CUSK\x01", 5) == 0);
    CU_ASSERT_EQUAL(env_dek_parse(d, n, &back, NULL), ENV_OK);
    CU_ASSERT_EQUAL(back.fam_len, kb.fam_len);
    CU_ASSERT_EQUAL(back.kek_version, kb.kek_version);
    CU_ASSERT_EQUAL(back.wdek_len, kb.wdek_len);
    CU_ASSERT(memcmp(back.wdek, kb.wdek, kb.wdek_len) == 0);
    for (size_t cut = 0; cut < n; cut++)
        CU_ASSERT_EQUAL(env_dek_parse(d, cut, &back, NULL), ENV_E_TRUNCATED);
    uint8_t *longer = malloc(n + 1);
    CU_ASSERT_FATAL(longer != NULL);
    memcpy(longer, d, n);
    longer[n] = 0;
    CU_ASSERT_EQUAL(env_dek_parse(longer, n + 1, &back, NULL), ENV_E_TRAILING);
    longer[0] = 'X';
    CU_ASSERT_EQUAL(env_dek_parse(longer, n, &back, NULL), ENV_E_MAGIC);
    free(longer);
    free(d);
}

static void test_base64url_round_trips_every_length(void)
{
    uint8_t in[64], back[64];
    char txt[100];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (uint8_t)(i * 37 + 250);
    for (size_t n = 0; n <= sizeof(in); n++) {
        size_t m = 0;
        env_b64_encode(in, n, txt);
        CU_ASSERT_EQUAL(strlen(txt), env_b64_len(n));
        CU_ASSERT(strchr(txt, '=') == NULL && strchr(txt, '+') == NULL && strchr(txt, '/') == NULL);
        CU_ASSERT_EQUAL(env_b64_decode(txt, strlen(txt), back, &m), ENV_OK);
        CU_ASSERT_EQUAL(m, n);
        CU_ASSERT(memcmp(in, back, n) == 0);
    }
    /* RFC 4648 sec. 10 vectors, base64url, no padding. */
    env_b64_encode((const uint8_t *)"foobar", 6, txt);
    CU_ASSERT_STRING_EQUAL(txt, "Zm9vYmFy");
    env_b64_encode((const uint8_t *)"fo", 2, txt);
    CU_ASSERT_STRING_EQUAL(txt, "Zm8");
    const uint8_t ff[] = { 0xFB, 0xFF };
    env_b64_encode(ff, 2, txt);
    CU_ASSERT_STRING_EQUAL(txt, "-_8");
}

static void test_text_form_round_trips_envelope_and_dek(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    char *t = NULL;
    uint8_t *back = NULL;
    size_t m = 0;
    CU_ASSERT_FATAL(env_to_text(b, n, &t) == ENV_OK);
    CU_ASSERT(strncmp(t, "cus1:", 5) == 0);
    CU_ASSERT_EQUAL(env_from_text(t, strlen(t), &back, &m), ENV_OK);
    CU_ASSERT_EQUAL(m, n);
    CU_ASSERT(back != NULL && memcmp(back, b, n) == 0);
    free(t);
    free(back);

    env_kb kb;
    uint8_t *d = NULL;
    sample_kb(&kb);
    CU_ASSERT_FATAL(env_dek_encode(&kb, &d, &n) == ENV_OK);
    CU_ASSERT_FATAL(env_to_text(d, n, &t) == ENV_OK);
    CU_ASSERT(strncmp(t, "cusk1:", 6) == 0);
    back = NULL;
    CU_ASSERT_EQUAL(env_from_text(t, strlen(t), &back, &m), ENV_OK);
    CU_ASSERT(m == n && back != NULL && memcmp(back, d, n) == 0);
    free(t);
    free(back);
    free(d);
    CU_ASSERT_EQUAL(env_to_text((const uint8_t *)"JUNKJUNK", 8, &t), ENV_E_MAGIC);
}

static void expect_bad_text(const char *t)
{
    uint8_t *b = NULL;
    size_t n = 0;
    CU_ASSERT_EQUAL(env_from_text(t, strlen(t), &b, &n), ENV_E_TEXT);
    CU_ASSERT_PTR_NULL(b);
}

static void test_bad_text_forms_are_rejected(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    char *t = NULL;
    CU_ASSERT_FATAL(env_to_text(b, n, &t) == ENV_OK);
    size_t tl = strlen(t);
    char *m = malloc(tl + 8);
    CU_ASSERT_FATAL(m != NULL);

    expect_bad_text("");
    expect_bad_text("cus1");
    expect_bad_text("cus2:Q1VTRQE");
    expect_bad_text("CUS1:Q1VTRQE");
    expect_bad_text("Q1VTRQE");           /* no prefix */
    expect_bad_text("cus1:");             /* nothing */
    expect_bad_text("cus1:Q1VTRQE=");     /* padding */
    expect_bad_text("cus1:Q1VT RQE");     /* whitespace inside */
    expect_bad_text("cus1:Q1VTRQE+");     /* standard alphabet, not url */
    expect_bad_text("cus1:Q1VTR");        /* length = 1 mod 4 */
    expect_bad_text("cus1:Q1VTRQF");      /* non-zero unused bits */
    expect_bad_text("cus1:Q1VTSwE");      /* decodes to "CUSK": wrong magic for cus1 */
    expect_bad_text("cusk1:Q1VTRQE");     /* decodes to "CUSE": wrong magic for cusk1 */
    snprintf(m, tl + 8, "%s\n", t);       /* trailing newline */
    expect_bad_text(m);
    snprintf(m, tl + 8, " %s", t);        /* leading blank */
    expect_bad_text(m);
    snprintf(m, tl + 8, "%s!", t);        /* trailing garbage */
    expect_bad_text(m);
    memcpy(m, t, tl + 1);
    m[tl / 2] = '.';                      /* a character outside the alphabet */
    expect_bad_text(m);
    uint8_t *out = NULL;
    size_t on = 0;
    CU_ASSERT_EQUAL(env_from_text(t, ENV_TEXT_MAX + 1, &out, &on), ENV_E_TOO_LARGE);
    free(m);
    free(t);
}

static void test_body_layout_accepts_only_writer_shapes(void)
{
    const uint64_t C = 1024, P = C + 16;
    uint64_t n = 0;
    CU_ASSERT_EQUAL(env_body_layout(16, 10, &n), ENV_OK); /* empty plaintext */
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(env_body_layout(P, 10, &n), ENV_OK);
    CU_ASSERT_EQUAL(n, 1);
    CU_ASSERT_EQUAL(env_body_layout(P + 17, 10, &n), ENV_OK);
    CU_ASSERT_EQUAL(n, 2);
    CU_ASSERT_EQUAL(env_body_layout(3 * P, 10, &n), ENV_OK);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(env_body_layout(0, 10, &n), ENV_E_TRUNCATED);
    CU_ASSERT_EQUAL(env_body_layout(15, 10, &n), ENV_E_TRUNCATED);
    CU_ASSERT_EQUAL(env_body_layout(P + 1, 10, &n), ENV_E_TRUNCATED);   /* trailing garbage */
    CU_ASSERT_EQUAL(env_body_layout(P + 15, 10, &n), ENV_E_TRUNCATED);
    CU_ASSERT_EQUAL(env_body_layout(P + 16, 10, &n), ENV_E_FIELD);      /* empty final after 0 */
    CU_ASSERT_EQUAL(env_body_layout(P * ((uint64_t)1 << 32), 10, &n), ENV_OK);
    CU_ASSERT_EQUAL(n, (uint64_t)1 << 32);
    CU_ASSERT_EQUAL(env_body_layout(P * ((uint64_t)1 << 32) + 17, 10, &n), ENV_E_TOO_LARGE);
    CU_ASSERT_EQUAL(env_body_layout(P, 9, &n), ENV_E_FIELD);
}

static void test_inspect_shows_header_and_no_secret_bytes(void)
{
    uint8_t b[ENV_HEADER_MAX];
    size_t n = sample_header(b, sizeof(b), NULL);
    env_info info;
    CU_ASSERT_FATAL(env_inspect(b, n, &info) == ENV_OK);
    CU_ASSERT_EQUAL(info.is_dek_file, 0);
    CU_ASSERT_EQUAL(info.format_version, 1);
    CU_ASSERT_STRING_EQUAL(info.aead_name, "AES-256-GCM");
    CU_ASSERT_EQUAL(info.chunk_size, 65536);
    CU_ASSERT_STRING_EQUAL(info.context, CTX);
    CU_ASSERT_STRING_EQUAL(info.family, FAM);
    CU_ASSERT_EQUAL(info.kek_version, 7);
    CU_ASSERT_STRING_EQUAL(info.wrap_name, "CKM_AES_KEY_WRAP_KWP");
    CU_ASSERT_EQUAL(info.wrapped_dek_len, 40);
    CU_ASSERT_EQUAL(info.header_len, n);
    /* Neither the nonces nor the wrapped DEK's bytes are in the result. */
    env_kb kb;
    sample_kb(&kb);
    CU_ASSERT_PTR_NULL(memmem(&info, sizeof(info), NONCE, 6));
    CU_ASSERT_PTR_NULL(memmem(&info, sizeof(info), kb.wdek, 6));
    CU_ASSERT_PTR_NULL(memmem(&info, sizeof(info), kb.kb_nonce, 6));
    CU_ASSERT_PTR_NULL(memmem(&info, sizeof(info), kb.kb_tag, 6));

    uint8_t *d = NULL;
    size_t dn = 0;
    CU_ASSERT_FATAL(env_dek_encode(&kb, &d, &dn) == ENV_OK);
    CU_ASSERT_EQUAL(env_inspect(d, dn, &info), ENV_OK);
    CU_ASSERT_EQUAL(info.is_dek_file, 1);
    CU_ASSERT_STRING_EQUAL(info.family, FAM);
    CU_ASSERT_PTR_NULL(memmem(&info, sizeof(info), kb.wdek, 6));
    free(d);
    CU_ASSERT_EQUAL(env_inspect((const uint8_t *)"GARBAGE!", 8, &info), ENV_E_MAGIC);
    CU_ASSERT_EQUAL(env_inspect(b, 10, &info), ENV_E_TRUNCATED);
}

static void test_error_messages_exist_for_every_outcome(void)
{
    for (int rv = ENV_OK; rv <= ENV_E_STATE; rv++)
        CU_ASSERT_STRING_NOT_EQUAL(env_strerror((env_rv)rv), "unknown error");
    CU_ASSERT_STRING_EQUAL(env_strerror((env_rv)999), "unknown error");
}

static const cunit_case CASES[] = {
    CASE(test_header_round_trip_keeps_every_field),
    CASE(test_header_with_empty_context_and_family_round_trips),
    CASE(test_largest_header_fits_header_max),
    CASE(test_every_truncated_header_is_rejected_as_truncated),
    CASE(test_bad_magic_is_rejected),
    CASE(test_unknown_version_is_rejected),
    CASE(test_unknown_aead_is_rejected),
    CASE(test_chunk_shift_out_of_range_is_rejected),
    CASE(test_nonzero_flags_are_rejected),
    CASE(test_oversized_context_length_is_rejected_without_waiting),
    CASE(test_length_fields_pointing_past_the_end_are_truncated),
    CASE(test_control_characters_in_context_are_rejected),
    CASE(test_oversized_family_length_is_rejected),
    CASE(test_bad_wrapped_dek_lengths_are_rejected),
    CASE(test_unknown_wrap_mechanism_is_rejected),
    CASE(test_dek_file_round_trip_and_trailing_bytes_rejected),
    CASE(test_base64url_round_trips_every_length),
    CASE(test_text_form_round_trips_envelope_and_dek),
    CASE(test_bad_text_forms_are_rejected),
    CASE(test_body_layout_accepts_only_writer_shapes),
    CASE(test_inspect_shows_header_and_no_secret_bytes),
    CASE(test_error_messages_exist_for_every_outcome),
};

CUNIT_MAIN("envelope_format", CASES, NULL, NULL)
