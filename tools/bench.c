/* bench.c -- `custos bench`: runs named workloads on any PKCS#11 module loaded by path, side by side
 * with other modules (--vs) and with plain OpenSSL EVP in this process (--raw-openssl, the physical
 * limit), in T threads or P processes, and prints ops/s, median and p99 latency and MB/s (or JSON
 * lines). Workloads are rows of one table; each has a PKCS#11 loop and, where it has a meaning,
 * the same loop on OpenSSL. Token preparation per kind of module is in bench_peers.c. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1 /* configure defines it for the autotools build */
#endif
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

extern char **environ;

const char bench_usage[] =
    "Usage: custos bench --module PATH [--vs PATH]... [--raw-openssl] [OPTIONS]\n"
    "       custos bench --list\n"
    "\n"
    "Runs workloads on the PKCS#11 module at PATH (dlopen; any module: Custos, SoftHSM2, NSS\n"
    "softoken, ...). Each module gets its own throwaway token in a temp dir unless --token is given.\n"
    "\n"
    "  --module PATH        the module to measure (A)\n"
    "  --vs PATH            also run each workload on this module (repeatable); rounds alternate\n"
    "                       A B A B ... and the ratio A/B is printed per workload\n"
    "  --raw-openssl        also run the symmetric and signature loops on OpenSSL EVP directly\n"
    "  --workload LIST      comma-separated workload names (default: all); see --list\n"
    "  --list               list the workloads and exit\n"
    "  --seconds S          time per workload per module (default 1), split over the rounds\n"
    "  --rounds R           alternations per workload (default 3 when comparing, else 1)\n"
    "  --threads LIST       thread counts, e.g. 1,2 (default 1); prints the scaling\n"
    "  --processes P        run the workload in P processes on the same token (default 1)\n"
    "  --keys N             keys in the token for find-label and open-login (default 1000)\n"
    "  --token LABEL        use this existing token on the --module module instead of a new one\n"
    "  --pin-file FILE      its user PIN: first line of FILE (else asked on the terminal)\n"
    "  --nss-dir DIR        with --token on NSS softoken: its database directory\n"
    "  --workdir DIR        keep the prepared tokens in DIR/<module> and reuse them next time\n"
    "                       (populating 1,000,000 keys once, then measuring many times)\n"
    "  --custos-conf-extra SECTION.KEY=VALUE\n"
    "                       a setting added to the configuration the bench writes for its own\n"
    "                       Custos token (repeatable), e.g. audit.enabled=no; it applies to the\n"
    "                       module named by the --module or --vs before it (else to --module).\n"
    "                       To compare two settings in one run, give a copy of the module under\n"
    "                       another file name with --vs (one file is loaded only once)\n"
    "  --json               one JSON object per line instead of the table\n"
    "  --quiet              no progress messages on stderr\n"
    "\n"
    "PINs are never taken from the command line or the environment. Median and p99 are per\n"
    "operation; operations shorter than a few microseconds are timed in small batches. MB/s is\n"
    "10^6 bytes of payload per second.\n";

/* ---- time and samples ----------------------------------------------------------------------------- */
static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct fvec {
    float *v;
    size_t n, cap;
} fvec;

#define SAMPLE_CAP (32u << 20)

static void fvec_push(fvec *a, double x)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 4096;
        if (cap > SAMPLE_CAP)
            return; /* enough samples for a percentile; keep counting operations */
        float *v = realloc(a->v, cap * sizeof(*v));
        if (v == NULL)
            return;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = (float)x;
}

static void fvec_append(fvec *a, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fvec_push(a, v[i]);
}

static void fvec_free(fvec *a)
{
    free(a->v);
    memset(a, 0, sizeof(*a));
}

static int fcmp(const void *x, const void *y)
{
    float a = *(const float *)x, b = *(const float *)y;
    return (a > b) - (a < b);
}

static double pct(fvec *a, double p)
{
    if (a->n == 0)
        return NAN;
    qsort(a->v, a->n, sizeof(*a->v), fcmp);
    size_t i = (size_t)ceil(p * (double)a->n) - (p > 0);
    return a->v[i < a->n ? i : a->n - 1];
}

/* ---- workers ------------------------------------------------------------------------------------------ */
typedef struct workload workload;

/* Untimed state of one workload on one target, made once before the rounds. */
typedef struct shared {
    CK_OBJECT_HANDLE kek;             /* token KEK for wrap, unwrap and envelopes */
    CK_MECHANISM_TYPE wrap_mech;
    bool unwrap_len;                  /* the unwrap template carries CKA_VALUE_LEN */
    CK_ULONG chacha_nonce_len;        /* 96 (bits, as the standard says) or 12 (bytes, NSS) */
    unsigned long nkeys;
} shared;

/* The CK_GCM_PARAMS layout without ulIvBits (INTEROP.md: Java and old tokens). */
typedef struct gcm40 {
    CK_BYTE_PTR pIv;
    CK_ULONG ulIvLen;
    CK_BYTE_PTR pAAD;
    CK_ULONG ulAADLen;
    CK_ULONG ulTagBits;
} gcm40;

typedef struct run_ctl {
    atomic_int go, stop;
} run_ctl;

typedef struct worker {
    bench_target *t;
    CK_FUNCTION_LIST_PTR f;
    const workload *wl;
    shared *sh;
    run_ctl *ctl;
    unsigned id;
    CK_SESSION_HANDLE s;
    CK_OBJECT_HANDLE key, pub;
    CK_MECHANISM mech, wmech, gmech;
    CK_GCM_PARAMS gp;
    gcm40 gp40;
    CK_SALSA20_CHACHA20_POLY1305_PARAMS cp;
    CK_GCM_MESSAGE_PARAMS gmp;        /* the message workloads' per-message parameter */
    CK_BYTE iv[12], tag[16];
    uint64_t ctr;
    CK_BYTE *in, *out, *ct;
    CK_ULONG len, outcap, ctlen;
    CK_BYTE wrapped[64];
    CK_ULONG wrapped_len;
    uint64_t rng;
    CK_OBJECT_HANDLE *made;           /* keygen-token: destroyed after the run */
    size_t nmade, capmade;
    /* raw OpenSSL */
    EVP_CIPHER_CTX *ectx, *wctx, *uctx;
    EVP_MAC_CTX *mac;
    EVP_PKEY *pkey;
    EVP_PKEY_CTX *pctx;
    unsigned char rkey[32], rkek[32], rdek[32];
    bool rekey;                       /* the wrap ctx must be keyed again per operation */
    /* results */
    unsigned batch;
    uint64_t ops;
    fvec lat;
    CK_RV rv;
    const char *what;
    pthread_t th;
} worker;

#define W_ONE_THREAD 0x1u   /* login state is per process: one thread only */
#define W_SPAWN 0x2u        /* measured by starting processes (open-login) */
#define W_KEYS 0x4u         /* needs --keys keys in the token */
#define W_KDF 0x8u          /* Custos: the default-KDF token */
#define W_DEC 0x10u
#define W_NO_PROCS 0x20u    /* not meaningful with --processes */
#define W_MSG 0x40u         /* PKCS#11 3.0 message-based AEAD (C_EncryptMessage, C_DecryptMessage) */

struct workload {
    const char *name;
    const char *help;
    CK_MECHANISM_TYPE need[3];        /* all must be listed (0 ends) */
    CK_ULONG bytes;                   /* payload per operation, for MB/s */
    unsigned flags;
    CK_RV (*prep)(bench_target *t, shared *sh, const workload *wl);
    CK_RV (*init)(worker *w);
    CK_RV (*op)(worker *w);
    CK_RV (*raw_init)(worker *w);
    CK_RV (*raw_op)(worker *w);
};

#define P11(w, fn, ...)                                 \
    do {                                                \
        CK_RV r_ = (w)->f->fn(__VA_ARGS__);             \
        if (r_ != CKR_OK) {                             \
            (w)->what = #fn;                            \
            return r_;                                  \
        }                                               \
    } while (0)
/* The same through the PKCS#11 3.0 list (skip_reason made sure the module announced it). */
#define P11_3(w, fn, ...)                                                  \
    do {                                                                   \
        CK_RV r_ = ((CK_FUNCTION_LIST_3_0_PTR)(w)->f)->fn(__VA_ARGS__);    \
        if (r_ != CKR_OK) {                                                \
            (w)->what = #fn;                                               \
            return r_;                                                     \
        }                                                                  \
    } while (0)
#define OSSL(w, cond, name)                             \
    do {                                                \
        if (!(cond)) {                                  \
            (w)->what = name;                           \
            return CKR_FUNCTION_FAILED;                 \
        }                                               \
    } while (0)

static unsigned long bench_nkeys = 1000;
static bool bench_quiet;
static CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
static CK_OBJECT_CLASS cls_secret = CKO_SECRET_KEY;
static CK_KEY_TYPE kt_aes = CKK_AES, kt_generic = CKK_GENERIC_SECRET, kt_chacha = CKK_CHACHA20;
static CK_ULONG len32 = 32;
static EVP_CIPHER *c_gcm, *c_chacha, *c_kw, *c_kwp;

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* A unique 96-bit nonce per operation: the worker's id and a counter (NIST SP 800-38D sec. 8.2.1,
 * deterministic construction). Every worker also has its own key. */
static void next_iv(worker *w)
{
    uint32_t id = w->id;
    memcpy(w->iv, &id, 4);
    memcpy(w->iv + 4, &w->ctr, 8);
    w->ctr++;
}

static CK_RV open_session(worker *w, CK_SLOT_ID slot)
{
    P11(w, C_OpenSession, slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &w->s);
    return CKR_OK;
}

/* An AES-256 key: a session DEK (extractable, so it can be wrapped) or a durable token key. */
static CK_RV gen_aes(worker *w, CK_SESSION_HANDLE s, bool token, bool kek, const char *label,
                     CK_OBJECT_HANDLE *h)
{
    CK_MECHANISM m = { CKM_AES_KEY_GEN, NULL, 0 };
    CK_ATTRIBUTE a[12] = {
        { CKA_CLASS, &cls_secret, sizeof(cls_secret) },
        { CKA_KEY_TYPE, &kt_aes, sizeof(kt_aes) },
        { CKA_VALUE_LEN, &len32, sizeof(len32) },
        { CKA_TOKEN, token ? &yes : &no, sizeof(CK_BBOOL) },
        { CKA_PRIVATE, &yes, sizeof(CK_BBOOL) },
        { CKA_SENSITIVE, &yes, sizeof(CK_BBOOL) },
        { CKA_ENCRYPT, &yes, sizeof(CK_BBOOL) },
        { CKA_DECRYPT, &yes, sizeof(CK_BBOOL) },
    };
    CK_ULONG n = 8;
    if (kek) {
        a[n++] = (CK_ATTRIBUTE){ CKA_WRAP, &yes, sizeof(CK_BBOOL) };
        a[n++] = (CK_ATTRIBUTE){ CKA_UNWRAP, &yes, sizeof(CK_BBOOL) };
    } else if (!token) {
        a[n++] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &yes, sizeof(CK_BBOOL) };
    }
    if (label != NULL)
        a[n++] = (CK_ATTRIBUTE){ CKA_LABEL, (void *)label, strlen(label) };
    P11(w, C_GenerateKey, s, &m, a, n, h);
    return CKR_OK;
}

static CK_RV find_label(worker *w, CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *h,
                        CK_ULONG *count)
{
    CK_ATTRIBUTE a[] = { { CKA_LABEL, (void *)label, strlen(label) } };
    CK_OBJECT_HANDLE found[2];
    P11(w, C_FindObjectsInit, s, a, 1);
    CK_RV rv = w->f->C_FindObjects(s, found, 2, count);
    CK_RV rv2 = w->f->C_FindObjectsFinal(s);
    if (rv != CKR_OK || rv2 != CKR_OK) {
        w->what = rv != CKR_OK ? "C_FindObjects" : "C_FindObjectsFinal";
        return rv != CKR_OK ? rv : rv2;
    }
    if (h != NULL && *count > 0)
        *h = found[0];
    return CKR_OK;
}

static CK_RV alloc_buffers(worker *w, CK_ULONG len)
{
    w->len = len;
    w->outcap = len + 64;
    w->in = malloc(len + 1);
    w->out = malloc(w->outcap);
    w->ct = malloc(w->outcap);
    if (w->in == NULL || w->out == NULL || w->ct == NULL) {
        w->what = "malloc";
        return CKR_HOST_MEMORY;
    }
    for (CK_ULONG i = 0; i < len; i++)
        w->in[i] = (CK_BYTE)(i * 31 + 7);
    return CKR_OK;
}

/* ---- AEAD: AES-256-GCM and ChaCha20-Poly1305 ------------------------------------------------------ */
static void set_aead(worker *w, CK_MECHANISM_TYPE type, CK_MECHANISM *m)
{
    m->mechanism = type;
    if (type == CKM_CHACHA20_POLY1305) {
        w->cp = (CK_SALSA20_CHACHA20_POLY1305_PARAMS){ w->iv, w->sh ? w->sh->chacha_nonce_len : 96, NULL, 0 };
        m->pParameter = &w->cp;
        m->ulParameterLen = sizeof(w->cp);
    } else if (w->t->gcm_layout == 40) {
        w->gp40 = (gcm40){ w->iv, 12, NULL, 0, 128 };
        m->pParameter = &w->gp40;
        m->ulParameterLen = sizeof(w->gp40);
    } else {
        w->gp = (CK_GCM_PARAMS){ w->iv, 12, 96, NULL, 0, 128 };
        m->pParameter = &w->gp;
        m->ulParameterLen = sizeof(w->gp);
    }
}

static bool is_chacha(const workload *wl)
{
    return wl->need[0] == CKM_CHACHA20_POLY1305;
}

static CK_RV gen_aead_key(worker *w, CK_OBJECT_HANDLE *h)
{
    if (!is_chacha(w->wl))
        return gen_aes(w, w->s, false, false, NULL, h);
    CK_MECHANISM m = { CKM_CHACHA20_KEY_GEN, NULL, 0 };
    CK_ATTRIBUTE a[] = {
        { CKA_CLASS, &cls_secret, sizeof(cls_secret) }, { CKA_KEY_TYPE, &kt_chacha, sizeof(kt_chacha) },
        { CKA_VALUE_LEN, &len32, sizeof(len32) },       { CKA_TOKEN, &no, sizeof(CK_BBOOL) },
        { CKA_ENCRYPT, &yes, sizeof(CK_BBOOL) },        { CKA_DECRYPT, &yes, sizeof(CK_BBOOL) },
    };
    P11(w, C_GenerateKey, w->s, &m, a, NELEM(a), h);
    return CKR_OK;
}

static CK_RV aead_encrypt_once(worker *w, CK_OBJECT_HANDLE key, CK_BYTE *out, CK_ULONG *outlen)
{
    P11(w, C_EncryptInit, w->s, &w->mech, key);
    P11(w, C_Encrypt, w->s, w->in, w->len, out, outlen);
    return CKR_OK;
}

/* Which CK_GCM_PARAMS layout the module takes (INTEROP.md): the 48-byte one, else the 40-byte. */
static CK_RV prep_aead(bench_target *t, shared *sh, const workload *wl)
{
    worker w = { .t = t, .f = t->f, .wl = wl, .sh = sh };
    CK_OBJECT_HANDLE k;
    CK_BYTE out[64 + 16];
    CK_ULONG n = sizeof(out);
    CK_RV rv;
    if ((rv = open_session(&w, t->slot)) != CKR_OK || (rv = gen_aead_key(&w, &k)) != CKR_OK)
        goto out;
    w.len = 16;
    w.in = out;
    if (is_chacha(wl)) {
        sh->chacha_nonce_len = 96;
        set_aead(&w, CKM_CHACHA20_POLY1305, &w.mech);
        rv = aead_encrypt_once(&w, k, out + 16, &n);
        if (rv != CKR_OK) { /* NSS answers CKR_DATA_LEN_RANGE to 96 */
            sh->chacha_nonce_len = 12;
            set_aead(&w, CKM_CHACHA20_POLY1305, &w.mech);
            n = sizeof(out) - 16;
            rv = aead_encrypt_once(&w, k, out + 16, &n);
        }
        goto out;
    }
    t->gcm_layout = 48;
    set_aead(&w, CKM_AES_GCM, &w.mech);
    rv = aead_encrypt_once(&w, k, out + 16, &n);
    if (rv == CKR_MECHANISM_PARAM_INVALID || rv == CKR_ARGUMENTS_BAD) {
        t->gcm_layout = 40;
        set_aead(&w, CKM_AES_GCM, &w.mech);
        n = sizeof(out) - 16;
        rv = aead_encrypt_once(&w, k, out + 16, &n);
    }
out:
    if (w.s != CK_INVALID_HANDLE)
        (void)t->f->C_CloseSession(w.s);
    return rv;
}

static CK_RV aead_init(worker *w)
{
    CK_RV rv;
    if ((rv = open_session(w, w->t->slot)) != CKR_OK || (rv = gen_aead_key(w, &w->key)) != CKR_OK ||
        (rv = alloc_buffers(w, w->wl->bytes)) != CKR_OK)
        return rv;
    set_aead(w, w->wl->need[0], &w->mech);
    if (w->wl->flags & W_DEC) {
        next_iv(w); /* the IV of the one ciphertext that is decrypted again and again */
        w->ctlen = w->outcap;
        return aead_encrypt_once(w, w->key, w->ct, &w->ctlen);
    }
    return CKR_OK;
}

static CK_RV aead_enc(worker *w)
{
    CK_ULONG n = w->outcap;
    next_iv(w);
    P11(w, C_EncryptInit, w->s, &w->mech, w->key);
    P11(w, C_Encrypt, w->s, w->in, w->len, w->out, &n);
    return CKR_OK;
}

static CK_RV aead_dec(worker *w)
{
    CK_ULONG n = w->outcap;
    P11(w, C_DecryptInit, w->s, &w->mech, w->key);
    P11(w, C_Decrypt, w->s, w->ct, w->ctlen, w->out, &n);
    return CKR_OK;
}

static CK_RV aead_op(worker *w)
{
    return (w->wl->flags & W_DEC) ? aead_dec(w) : aead_enc(w);
}

/* Raw OpenSSL: the key schedule is made once (a token can cache it per key object too); each
 * operation sets a fresh IV, encrypts and takes the tag, exactly the work of C_Encrypt. */
static CK_RV raw_aead_enc_into(worker *w, EVP_CIPHER_CTX *c, const unsigned char *key, CK_BYTE *out,
                               CK_ULONG *outlen)
{
    int l1 = 0, l2 = 0;
    OSSL(w, EVP_EncryptInit_ex2(c, NULL, key, w->iv, NULL) == 1, "EVP_EncryptInit_ex2");
    OSSL(w, EVP_EncryptUpdate(c, out, &l1, w->in, (int)w->len) == 1, "EVP_EncryptUpdate");
    OSSL(w, EVP_EncryptFinal_ex(c, out + l1, &l2) == 1, "EVP_EncryptFinal_ex");
    OSSL(w, EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, out + l1 + l2) == 1, "GET_TAG");
    *outlen = (CK_ULONG)(l1 + l2 + 16);
    return CKR_OK;
}

static CK_RV raw_aead_dec_from(worker *w, EVP_CIPHER_CTX *c, const unsigned char *key)
{
    int l1 = 0, l2 = 0;
    OSSL(w, EVP_DecryptInit_ex2(c, NULL, key, w->iv, NULL) == 1, "EVP_DecryptInit_ex2");
    OSSL(w, EVP_DecryptUpdate(c, w->out, &l1, w->ct, (int)(w->ctlen - 16)) == 1, "EVP_DecryptUpdate");
    OSSL(w, EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, 16, w->ct + w->ctlen - 16) == 1, "SET_TAG");
    OSSL(w, EVP_DecryptFinal_ex(c, w->out + l1, &l2) == 1, "EVP_DecryptFinal_ex (tag)");
    return CKR_OK;
}

static CK_RV raw_aead_init(worker *w)
{
    CK_RV rv;
    const EVP_CIPHER *c = is_chacha(w->wl) ? c_chacha : c_gcm;
    if ((rv = alloc_buffers(w, w->wl->bytes)) != CKR_OK)
        return rv;
    OSSL(w, RAND_bytes(w->rkey, sizeof(w->rkey)) == 1, "RAND_bytes");
    w->ectx = EVP_CIPHER_CTX_new();
    OSSL(w, w->ectx != NULL, "EVP_CIPHER_CTX_new");
    if (w->wl->flags & W_DEC) {
        next_iv(w);
        OSSL(w, EVP_EncryptInit_ex2(w->ectx, c, w->rkey, NULL, NULL) == 1, "EVP_EncryptInit_ex2");
        if ((rv = raw_aead_enc_into(w, w->ectx, NULL, w->ct, &w->ctlen)) != CKR_OK)
            return rv;
        OSSL(w, EVP_DecryptInit_ex2(w->ectx, c, w->rkey, NULL, NULL) == 1, "EVP_DecryptInit_ex2");
        return CKR_OK;
    }
    OSSL(w, EVP_EncryptInit_ex2(w->ectx, c, w->rkey, NULL, NULL) == 1, "EVP_EncryptInit_ex2");
    return CKR_OK;
}

static CK_RV raw_aead_op(worker *w)
{
    if (w->wl->flags & W_DEC)
        return raw_aead_dec_from(w, w->ectx, NULL);
    CK_ULONG n;
    next_iv(w);
    return raw_aead_enc_into(w, w->ectx, NULL, w->out, &n);
}

/* ---- AES-256-GCM through the PKCS#11 3.0 message API ---------------------------------------------- */
/* One C_MessageEncryptInit per session, then one C_EncryptMessage per record: the API the standard
 * made for many short AEAD records under one key (PKCS#11 3.0 sec. 5.13). The nonce is the caller's
 * (CKG_NO_GENERATE), as in the single-part workloads and the raw loop, so the work is the same. */
static void set_msg_param(worker *w)
{
    w->gmp = (CK_GCM_MESSAGE_PARAMS){ w->iv, 12, 0, CKG_NO_GENERATE, w->tag, 128 };
}

static CK_RV msg_init(worker *w)
{
    CK_MECHANISM m = { CKM_AES_GCM, NULL, 0 };
    CK_RV rv;
    if ((rv = open_session(w, w->t->slot)) != CKR_OK ||
        (rv = gen_aes(w, w->s, false, false, NULL, &w->key)) != CKR_OK ||
        (rv = alloc_buffers(w, w->wl->bytes)) != CKR_OK)
        return rv;
    set_msg_param(w);
    P11_3(w, C_MessageEncryptInit, w->s, &m, w->key);
    if (!(w->wl->flags & W_DEC))
        return CKR_OK;
    /* The one record that is decrypted again and again: its IV and tag stay in iv and tag. */
    next_iv(w);
    w->ctlen = w->outcap;
    P11_3(w, C_EncryptMessage, w->s, &w->gmp, sizeof(w->gmp), NULL, 0, w->in, w->len, w->ct, &w->ctlen);
    P11_3(w, C_MessageEncryptFinal, w->s);
    P11_3(w, C_MessageDecryptInit, w->s, &m, w->key);
    return CKR_OK;
}

static CK_RV msg_op(worker *w)
{
    CK_ULONG n = w->outcap;
    if (w->wl->flags & W_DEC) {
        P11_3(w, C_DecryptMessage, w->s, &w->gmp, sizeof(w->gmp), NULL, 0, w->ct, w->ctlen, w->out, &n);
        return CKR_OK;
    }
    next_iv(w);
    P11_3(w, C_EncryptMessage, w->s, &w->gmp, sizeof(w->gmp), NULL, 0, w->in, w->len, w->out, &n);
    return CKR_OK;
}

/* ---- key wrap: a 256-bit DEK under a token KEK ---------------------------------------------------- */
static const char *mech_name(CK_MECHANISM_TYPE m)
{
    switch (m) {
    case CKM_AES_KEY_WRAP: return "CKM_AES_KEY_WRAP";
    case CKM_AES_KEY_WRAP_KWP: return "CKM_AES_KEY_WRAP_KWP";
    case CKM_AES_KEY_WRAP_PAD: return "CKM_AES_KEY_WRAP_PAD";
    default: return "";
    }
}

static bool wants_kw(const workload *wl)
{
    return strstr(wl->name, "-kw") != NULL && strstr(wl->name, "-kwp") == NULL;
}

static CK_RV unwrap_dek(worker *w, CK_OBJECT_HANDLE *h)
{
    CK_ATTRIBUTE a[] = {
        { CKA_CLASS, &cls_secret, sizeof(cls_secret) }, { CKA_KEY_TYPE, &kt_aes, sizeof(kt_aes) },
        { CKA_TOKEN, &no, sizeof(CK_BBOOL) },           { CKA_ENCRYPT, &yes, sizeof(CK_BBOOL) },
        { CKA_DECRYPT, &yes, sizeof(CK_BBOOL) },        { CKA_VALUE_LEN, &len32, sizeof(len32) },
    };
    P11(w, C_UnwrapKey, w->s, &w->wmech, w->sh->kek, w->wrapped, w->wrapped_len, a,
        w->sh->unwrap_len ? 6 : 5, h);
    return CKR_OK;
}

static CK_RV wrap_dek(worker *w, CK_OBJECT_HANDLE dek, CK_BYTE *out, CK_ULONG *n)
{
    *n = 64;
    P11(w, C_WrapKey, w->s, &w->wmech, w->sh->kek, dek, out, n);
    return CKR_OK;
}

/* The token KEK (found by label, so processes and later runs share it), the wrap mechanism
 * the module lists, and whether its unwrap takes CKA_VALUE_LEN in the template. */
static CK_RV prep_wrap(bench_target *t, shared *sh, const workload *wl)
{
    worker w = { .t = t, .f = t->f, .wl = wl, .sh = sh };
    CK_OBJECT_HANDLE dek, h;
    CK_ULONG count = 0;
    CK_RV rv;
    if (wants_kw(wl))
        sh->wrap_mech = CKM_AES_KEY_WRAP;
    else if (peer_has_mech(t, CKM_AES_KEY_WRAP_KWP))
        sh->wrap_mech = CKM_AES_KEY_WRAP_KWP;
    else if (peer_has_mech(t, CKM_AES_KEY_WRAP_PAD))
        sh->wrap_mech = CKM_AES_KEY_WRAP_PAD; /* RFC 5649 in 2.40-era tokens (INTEROP.md) */
    else if (strncmp(wl->name, "envelope", 8) == 0)
        sh->wrap_mech = CKM_AES_KEY_WRAP;
    else
        return CKR_MECHANISM_INVALID;
    if (!peer_has_mech(t, sh->wrap_mech))
        return CKR_MECHANISM_INVALID;
    if ((rv = open_session(&w, t->slot)) != CKR_OK)
        return rv;
    if ((rv = find_label(&w, w.s, "bench-kek", &sh->kek, &count)) != CKR_OK)
        goto out;
    if (count == 0 && (rv = gen_aes(&w, w.s, true, true, "bench-kek", &sh->kek)) != CKR_OK)
        goto out;
    w.wmech = (CK_MECHANISM){ sh->wrap_mech, NULL, 0 };
    if ((rv = gen_aes(&w, w.s, false, false, NULL, &dek)) != CKR_OK ||
        (rv = wrap_dek(&w, dek, w.wrapped, &w.wrapped_len)) != CKR_OK)
        goto out;
    sh->unwrap_len = true;
    rv = unwrap_dek(&w, &h);
    if (rv != CKR_OK) {
        sh->unwrap_len = false;
        rv = unwrap_dek(&w, &h);
    }
out:
    (void)t->f->C_CloseSession(w.s);
    return rv;
}

static CK_RV wrap_init(worker *w)
{
    CK_RV rv;
    w->wmech = (CK_MECHANISM){ w->sh->wrap_mech, NULL, 0 };
    if ((rv = open_session(w, w->t->slot)) != CKR_OK ||
        (rv = gen_aes(w, w->s, false, false, NULL, &w->key)) != CKR_OK)
        return rv;
    return wrap_dek(w, w->key, w->wrapped, &w->wrapped_len);
}

static CK_RV wrap_op(worker *w)
{
    CK_BYTE buf[64];
    CK_ULONG n;
    return wrap_dek(w, w->key, buf, &n);
}

/* The unwrapped key is destroyed in the same operation, so the session does not grow. */
static CK_RV unwrap_op(worker *w)
{
    CK_OBJECT_HANDLE h;
    CK_RV rv = unwrap_dek(w, &h);
    if (rv != CKR_OK)
        return rv;
    P11(w, C_DestroyObject, w->s, h);
    return CKR_OK;
}

/* Raw OpenSSL key wrap: the KEK's key schedule is kept if OpenSSL allows re-initialising the
 * wrap context without the key (checked once); otherwise it is keyed per operation. */
static CK_RV raw_wrap_into(worker *w, const unsigned char *dek, unsigned char *out, int *outlen)
{
    OSSL(w, EVP_EncryptInit_ex2(w->wctx, NULL, w->rekey ? w->rkek : NULL, NULL, NULL) == 1,
         "EVP_EncryptInit_ex2");
    OSSL(w, EVP_EncryptUpdate(w->wctx, out, outlen, dek, 32) == 1, "EVP_EncryptUpdate (wrap)");
    return CKR_OK;
}

static CK_RV raw_unwrap_into(worker *w, unsigned char *dek)
{
    int n = 0;
    OSSL(w, EVP_DecryptInit_ex2(w->uctx, NULL, w->rekey ? w->rkek : NULL, NULL, NULL) == 1,
         "EVP_DecryptInit_ex2");
    OSSL(w, EVP_DecryptUpdate(w->uctx, dek, &n, w->wrapped, (int)w->wrapped_len) == 1 && n == 32,
         "EVP_DecryptUpdate (unwrap)");
    return CKR_OK;
}

static CK_RV raw_wrap_init(worker *w)
{
    const EVP_CIPHER *c = wants_kw(w->wl) ? c_kw : c_kwp;
    unsigned char a[64], b[64];
    int na = 0, nb = 0;
    CK_RV rv;
    OSSL(w, RAND_bytes(w->rkek, 32) == 1 && RAND_bytes(w->rdek, 32) == 1, "RAND_bytes");
    w->wctx = EVP_CIPHER_CTX_new();
    w->uctx = EVP_CIPHER_CTX_new();
    w->ectx = EVP_CIPHER_CTX_new();
    OSSL(w, w->wctx && w->uctx && w->ectx, "EVP_CIPHER_CTX_new");
    EVP_CIPHER_CTX_set_flags(w->wctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    EVP_CIPHER_CTX_set_flags(w->uctx, EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
    OSSL(w, EVP_EncryptInit_ex2(w->wctx, c, w->rkek, NULL, NULL) == 1, "EVP_EncryptInit_ex2");
    OSSL(w, EVP_DecryptInit_ex2(w->uctx, c, w->rkek, NULL, NULL) == 1, "EVP_DecryptInit_ex2");
    OSSL(w, EVP_EncryptInit_ex2(w->ectx, c_gcm, NULL, NULL, NULL) == 1, "EVP_EncryptInit_ex2");
    w->rekey = true;
    if ((rv = raw_wrap_into(w, w->rdek, a, &na)) != CKR_OK)
        return rv;
    w->rekey = false;
    if (raw_wrap_into(w, w->rdek, b, &nb) != CKR_OK || na != nb || memcmp(a, b, (size_t)na) != 0)
        w->rekey = true;
    memcpy(w->wrapped, a, (size_t)na);
    w->wrapped_len = (CK_ULONG)na;
    return alloc_buffers(w, 4096);
}

static CK_RV raw_wrap_op(worker *w)
{
    unsigned char out[64];
    int n = 0;
    return raw_wrap_into(w, w->rdek, out, &n);
}

static CK_RV raw_unwrap_op(worker *w)
{
    unsigned char dek[64];
    CK_RV rv = raw_unwrap_into(w, dek);
    OPENSSL_cleanse(dek, sizeof(dek));
    return rv;
}

/* ---- envelopes: generate DEK + wrap + encrypt 4 KiB, and unwrap + decrypt ------------------------- */
static CK_RV env_init(worker *w)
{
    CK_RV rv;
    CK_OBJECT_HANDLE dek;
    if ((rv = wrap_init(w)) != CKR_OK || (rv = alloc_buffers(w, 4096)) != CKR_OK)
        return rv;
    set_aead(w, CKM_AES_GCM, &w->gmech);
    if (!(w->wl->flags & W_DEC))
        return CKR_OK;
    /* envelope-read: one envelope made here, opened again and again */
    if ((rv = gen_aes(w, w->s, false, false, NULL, &dek)) != CKR_OK ||
        (rv = wrap_dek(w, dek, w->wrapped, &w->wrapped_len)) != CKR_OK)
        return rv;
    next_iv(w);
    w->ctlen = w->outcap;
    P11(w, C_EncryptInit, w->s, &w->gmech, dek);
    P11(w, C_Encrypt, w->s, w->in, w->len, w->ct, &w->ctlen);
    P11(w, C_DestroyObject, w->s, dek);
    return CKR_OK;
}

static CK_RV env_write_op(worker *w)
{
    CK_OBJECT_HANDLE dek;
    CK_BYTE wrapped[64];
    CK_ULONG n, m = w->outcap;
    CK_RV rv;
    if ((rv = gen_aes(w, w->s, false, false, NULL, &dek)) != CKR_OK ||
        (rv = wrap_dek(w, dek, wrapped, &n)) != CKR_OK)
        return rv;
    next_iv(w);
    P11(w, C_EncryptInit, w->s, &w->gmech, dek);
    P11(w, C_Encrypt, w->s, w->in, w->len, w->out, &m);
    P11(w, C_DestroyObject, w->s, dek);
    return CKR_OK;
}

static CK_RV env_read_op(worker *w)
{
    CK_OBJECT_HANDLE dek;
    CK_ULONG m = w->outcap;
    CK_RV rv = unwrap_dek(w, &dek);
    if (rv != CKR_OK)
        return rv;
    P11(w, C_DecryptInit, w->s, &w->gmech, dek);
    P11(w, C_Decrypt, w->s, w->ct, w->ctlen, w->out, &m);
    P11(w, C_DestroyObject, w->s, dek);
    return CKR_OK;
}

static CK_RV raw_env_init(worker *w)
{
    CK_RV rv = raw_wrap_init(w);
    if (rv != CKR_OK || !(w->wl->flags & W_DEC))
        return rv;
    next_iv(w);
    return raw_aead_enc_into(w, w->ectx, w->rdek, w->ct, &w->ctlen);
}

static CK_RV raw_env_write_op(worker *w)
{
    unsigned char dek[32], wrapped[64];
    int n = 0;
    CK_ULONG m;
    CK_RV rv;
    OSSL(w, RAND_priv_bytes(dek, sizeof(dek)) == 1, "RAND_priv_bytes");
    if ((rv = raw_wrap_into(w, dek, wrapped, &n)) == CKR_OK) {
        next_iv(w);
        rv = raw_aead_enc_into(w, w->ectx, dek, w->out, &m);
    }
    OPENSSL_cleanse(dek, sizeof(dek));
    return rv;
}

static CK_RV raw_env_read_op(worker *w)
{
    unsigned char dek[64];
    CK_RV rv = raw_unwrap_into(w, dek);
    if (rv == CKR_OK)
        rv = raw_aead_dec_from(w, w->ectx, dek);
    OPENSSL_cleanse(dek, sizeof(dek));
    return rv;
}

/* ---- keys, sessions, logins -------------------------------------------------------------------------- */
static CK_RV session_init(worker *w)
{
    return open_session(w, w->t->slot);
}

static CK_RV keygen_session_op(worker *w)
{
    CK_OBJECT_HANDLE h;
    CK_RV rv = gen_aes(w, w->s, false, false, NULL, &h);
    if (rv != CKR_OK)
        return rv;
    P11(w, C_DestroyObject, w->s, h);
    return CKR_OK;
}

static CK_RV keygen_token_op(worker *w)
{
    CK_OBJECT_HANDLE h;
    CK_RV rv = gen_aes(w, w->s, true, false, "bench-gen", &h);
    if (rv != CKR_OK)
        return rv;
    if (w->nmade == w->capmade) {
        size_t cap = w->capmade ? 2 * w->capmade : 256;
        CK_OBJECT_HANDLE *m = realloc(w->made, cap * sizeof(*m));
        if (m == NULL) {
            w->what = "realloc";
            return CKR_HOST_MEMORY;
        }
        w->made = m;
        w->capmade = cap;
    }
    w->made[w->nmade++] = h;
    return CKR_OK;
}

static CK_RV raw_keygen_op(worker *w)
{
    OSSL(w, RAND_priv_bytes(w->rdek, sizeof(w->rdek)) == 1, "RAND_priv_bytes");
    return CKR_OK;
}

static void key_label(char *buf, unsigned long i)
{
    snprintf(buf, 32, "bench-k%07lu", i);
}

static CK_RV has_key(worker *w, unsigned long i, bool *present)
{
    char label[32];
    CK_ULONG count = 0;
    key_label(label, i);
    CK_RV rv = find_label(w, w->s, label, NULL, &count);
    *present = count > 0;
    return rv;
}

/* N token keys labelled bench-k0000000...: made in order, so a run that was stopped is resumed
 * from the first missing label (found by bisection), and a kept token (--workdir, --token) is
 * reused as it is. */
static CK_RV prep_keys(bench_target *t, shared *sh, const workload *wl)
{
    worker w = { .t = t, .f = t->f, .wl = wl, .sh = sh };
    unsigned long n = bench_nkeys, lo = 0, hi = n;
    bool present;
    CK_RV rv;
    sh->nkeys = n;
    if ((rv = open_session(&w, t->slot)) != CKR_OK)
        return rv;
    if ((rv = has_key(&w, n - 1, &present)) != CKR_OK || present)
        goto out;
    while (lo < hi) { /* first missing label */
        unsigned long mid = lo + (hi - lo) / 2;
        if ((rv = has_key(&w, mid, &present)) != CKR_OK)
            goto out;
        if (present)
            lo = mid + 1;
        else
            hi = mid;
    }
    uint64_t t0 = now_ns(), last = t0;
    for (unsigned long i = lo; i < n; i++) {
        char label[32];
        CK_OBJECT_HANDLE h;
        key_label(label, i);
        if ((rv = gen_aes(&w, w.s, true, false, label, &h)) != CKR_OK)
            goto out;
        uint64_t t1 = now_ns();
        if (!bench_quiet && (t1 - last > 5000000000u || i + 1 == n) && n - lo >= 1000) {
            fprintf(stderr, "%s: %s: %lu of %lu keys in the token (%.0f keys/s)\n", cli_prog, t->name,
                    i + 1, n, (double)(i + 1 - lo) / ((double)(t1 - t0) / 1e9));
            last = t1;
        }
    }
out:
    if (rv != CKR_OK)
        fprintf(stderr, "%s: %s: populating keys: %s: %s\n", cli_prog, t->name, w.what, cli_rv_name(rv));
    (void)t->f->C_CloseSession(w.s);
    return rv;
}

static CK_RV find_init(worker *w)
{
    w->rng = 0x9E3779B97F4A7C15ull ^ ((uint64_t)w->id * 0x100000001B3ull) ^ (uint64_t)getpid();
    return open_session(w, w->t->slot);
}

static CK_RV find_op(worker *w)
{
    char label[32];
    CK_ULONG count = 0;
    key_label(label, (unsigned long)(xorshift(&w->rng) % w->sh->nkeys));
    CK_RV rv = find_label(w, w->s, label, NULL, &count);
    if (rv == CKR_OK && count != 1) {
        w->what = "C_FindObjects (expected exactly one key)";
        return CKR_GENERAL_ERROR;
    }
    return rv;
}

static CK_RV open_close_op(worker *w)
{
    CK_SESSION_HANDLE s;
    P11(w, C_OpenSession, w->t->slot, CKF_SERIAL_SESSION, NULL, NULL, &s);
    P11(w, C_CloseSession, s);
    return CKR_OK;
}

/* Login state belongs to the process (PKCS#11 3.2 sec. 5.6): the bench's own login is dropped for
 * the run and taken again afterwards (in worker_fini). */
static CK_RV login_init(worker *w)
{
    if (w->wl->flags & W_KDF)
        return open_session(w, w->t->kdf_slot);
    w->s = w->t->login_s;
    P11(w, C_Logout, w->s);
    return CKR_OK;
}

static CK_RV login_op(worker *w)
{
    P11(w, C_Login, w->s, CKU_USER, (CK_UTF8CHAR_PTR)w->t->pin, strlen(w->t->pin));
    P11(w, C_Logout, w->s);
    return CKR_OK;
}

/* ---- HMAC-SHA256 of 4 KiB ----------------------------------------------------------------------------- */
static CK_RV hmac_init(worker *w)
{
    CK_MECHANISM m = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
    CK_ATTRIBUTE a[] = {
        { CKA_CLASS, &cls_secret, sizeof(cls_secret) }, { CKA_KEY_TYPE, &kt_generic, sizeof(kt_generic) },
        { CKA_VALUE_LEN, &len32, sizeof(len32) },       { CKA_TOKEN, &no, sizeof(CK_BBOOL) },
        { CKA_SIGN, &yes, sizeof(CK_BBOOL) },           { CKA_VERIFY, &yes, sizeof(CK_BBOOL) },
    };
    CK_RV rv;
    if ((rv = open_session(w, w->t->slot)) != CKR_OK || (rv = alloc_buffers(w, w->wl->bytes)) != CKR_OK)
        return rv;
    w->mech = (CK_MECHANISM){ CKM_SHA256_HMAC, NULL, 0 };
    P11(w, C_GenerateKey, w->s, &m, a, NELEM(a), &w->key);
    return CKR_OK;
}

static CK_RV hmac_op(worker *w)
{
    CK_ULONG n = w->outcap;
    P11(w, C_SignInit, w->s, &w->mech, w->key);
    P11(w, C_Sign, w->s, w->in, w->len, w->out, &n);
    return CKR_OK;
}

static CK_RV raw_hmac_init(worker *w)
{
    OSSL_PARAM p[] = { OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                       OSSL_PARAM_construct_end() };
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    CK_RV rv = alloc_buffers(w, w->wl->bytes);
    OSSL(w, mac != NULL, "EVP_MAC_fetch");
    w->mac = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    OSSL(w, w->mac != NULL, "EVP_MAC_CTX_new");
    OSSL(w, RAND_bytes(w->rkey, 32) == 1, "RAND_bytes");
    OSSL(w, EVP_MAC_init(w->mac, w->rkey, 32, p) == 1, "EVP_MAC_init");
    return rv;
}

static CK_RV raw_hmac_op(worker *w)
{
    size_t n = 0;
    OSSL(w, EVP_MAC_init(w->mac, NULL, 0, NULL) == 1, "EVP_MAC_init");
    OSSL(w, EVP_MAC_update(w->mac, w->in, w->len) == 1, "EVP_MAC_update");
    OSSL(w, EVP_MAC_final(w->mac, w->out, &n, w->outcap) == 1, "EVP_MAC_final");
    return CKR_OK;
}

/* ---- signatures: RSA-2048 PKCS#1 v1.5 with SHA-256, ECDSA P-256 on a hash ------------------------- */
static bool is_rsa(const workload *wl)
{
    return wl->need[0] == CKM_SHA256_RSA_PKCS;
}

/* The key-pair generator is checked here: CKM_RSA_PKCS_KEY_PAIR_GEN is 0, the end of need[]. */
static CK_RV prep_sign(bench_target *t, shared *sh, const workload *wl)
{
    return peer_has_mech(t, is_rsa(wl) ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN)
               ? CKR_OK : CKR_MECHANISM_INVALID;
}

/* 32 bytes in; room for an RSA-2048 signature out. */
static CK_RV sign_buffers(worker *w)
{
    CK_RV rv = alloc_buffers(w, 32);
    if (rv != CKR_OK)
        return rv;
    free(w->out);
    w->outcap = 512;
    w->out = malloc(w->outcap);
    if (w->out == NULL) {
        w->what = "malloc";
        return CKR_HOST_MEMORY;
    }
    return CKR_OK;
}

static CK_RV sign_init(worker *w)
{
    static const CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
    static const CK_BYTE e65537[] = { 0x01, 0x00, 0x01 };
    CK_ULONG bits = 2048;
    CK_ATTRIBUTE rsa_pub[] = { { CKA_MODULUS_BITS, &bits, sizeof(bits) },
                               { CKA_PUBLIC_EXPONENT, (void *)e65537, sizeof(e65537) },
                               { CKA_VERIFY, &yes, sizeof(CK_BBOOL) } };
    CK_ATTRIBUTE ec_pub[] = { { CKA_EC_PARAMS, (void *)p256, sizeof(p256) },
                              { CKA_VERIFY, &yes, sizeof(CK_BBOOL) } };
    CK_ATTRIBUTE priv[] = { { CKA_TOKEN, &no, sizeof(CK_BBOOL) }, { CKA_SIGN, &yes, sizeof(CK_BBOOL) },
                            { CKA_SENSITIVE, &yes, sizeof(CK_BBOOL) }, { CKA_PRIVATE, &yes, sizeof(CK_BBOOL) } };
    CK_MECHANISM gen = { is_rsa(w->wl) ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0 };
    CK_RV rv;
    if ((rv = open_session(w, w->t->slot)) != CKR_OK || (rv = sign_buffers(w)) != CKR_OK)
        return rv;
    w->mech = (CK_MECHANISM){ w->wl->need[0], NULL, 0 };
    if (is_rsa(w->wl))
        P11(w, C_GenerateKeyPair, w->s, &gen, rsa_pub, NELEM(rsa_pub), priv, NELEM(priv), &w->pub, &w->key);
    else
        P11(w, C_GenerateKeyPair, w->s, &gen, ec_pub, NELEM(ec_pub), priv, NELEM(priv), &w->pub, &w->key);
    return CKR_OK;
}

static CK_RV sign_op(worker *w)
{
    CK_ULONG n = w->outcap;
    P11(w, C_SignInit, w->s, &w->mech, w->key);
    P11(w, C_Sign, w->s, w->in, w->len, w->out, &n);
    return CKR_OK;
}

static CK_RV raw_sign_init(worker *w)
{
    CK_RV rv = sign_buffers(w);
    if (rv != CKR_OK)
        return rv;
    if (is_rsa(w->wl))
        w->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    else
        w->pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    OSSL(w, w->pkey != NULL, "EVP_PKEY_Q_keygen");
    w->pctx = EVP_PKEY_CTX_new_from_pkey(NULL, w->pkey, NULL);
    OSSL(w, w->pctx != NULL && EVP_PKEY_sign_init(w->pctx) == 1, "EVP_PKEY_sign_init");
    if (is_rsa(w->wl)) {
        OSSL(w, EVP_PKEY_CTX_set_rsa_padding(w->pctx, RSA_PKCS1_PADDING) == 1, "set_rsa_padding");
        OSSL(w, EVP_PKEY_CTX_set_signature_md(w->pctx, EVP_sha256()) == 1, "set_signature_md");
    }
    return CKR_OK;
}

/* RSA: SHA-256 of the 32-byte message, then the private-key operation, as CKM_SHA256_RSA_PKCS does;
 * ECDSA: the 32 bytes are the hash, as with CKM_ECDSA. */
static CK_RV raw_sign_op(worker *w)
{
    unsigned char md[32];
    size_t n = w->outcap;
    const unsigned char *tbs = w->in;
    if (is_rsa(w->wl)) {
        OSSL(w, EVP_Digest(w->in, w->len, md, NULL, EVP_sha256(), NULL) == 1, "EVP_Digest");
        tbs = md;
    }
    OSSL(w, EVP_PKEY_sign(w->pctx, w->out, &n, tbs, 32) == 1, "EVP_PKEY_sign");
    return CKR_OK;
}

/* ---- the workload table ------------------------------------------------------------------------------------ */
#define GCM(nm, len, fl, h)                                                                        \
    { nm, h, { CKM_AES_GCM, CKM_AES_KEY_GEN }, len, fl, prep_aead, aead_init, aead_op, raw_aead_init, \
      raw_aead_op }

#define MSG(nm, len, fl, h)                                                                         \
    { nm, h, { CKM_AES_GCM, CKM_AES_KEY_GEN }, len, (fl) | W_MSG, NULL, msg_init, msg_op, raw_aead_init, \
      raw_aead_op }

static const workload WORKLOADS[] = {
    GCM("gcm-enc-64", 64, 0, "AES-256-GCM encrypt of 64 bytes (C_EncryptInit + C_Encrypt)"),
    GCM("gcm-enc-4k", 4096, 0, "AES-256-GCM encrypt of 4 KiB"),
    GCM("gcm-enc-1m", 1048576, 0, "AES-256-GCM encrypt of 1 MiB"),
    GCM("gcm-dec-64", 64, W_DEC, "AES-256-GCM decrypt of 64 bytes (tag checked)"),
    GCM("gcm-dec-4k", 4096, W_DEC, "AES-256-GCM decrypt of 4 KiB"),
    GCM("gcm-dec-1m", 1048576, W_DEC, "AES-256-GCM decrypt of 1 MiB"),
    MSG("gcm-msg-enc-64", 64, 0, "AES-256-GCM encrypt of 64 bytes, PKCS#11 3.0 C_EncryptMessage (one call)"),
    MSG("gcm-msg-enc-4k", 4096, 0, "AES-256-GCM encrypt of 4 KiB, C_EncryptMessage"),
    MSG("gcm-msg-dec-64", 64, W_DEC, "AES-256-GCM decrypt of 64 bytes, C_DecryptMessage"),
    MSG("gcm-msg-dec-4k", 4096, W_DEC, "AES-256-GCM decrypt of 4 KiB, C_DecryptMessage"),
    { "chacha-enc-4k", "ChaCha20-Poly1305 encrypt of 4 KiB (when the module lists it)",
      { CKM_CHACHA20_POLY1305, CKM_CHACHA20_KEY_GEN }, 4096, 0, prep_aead, aead_init, aead_op,
      raw_aead_init, raw_aead_op },
    { "wrap-kwp", "C_WrapKey of a 256-bit session DEK under a token KEK, RFC 5649 (KWP, else 0x210A)",
      { CKM_AES_KEY_GEN }, 0, 0, prep_wrap, wrap_init, wrap_op, raw_wrap_init, raw_wrap_op },
    { "unwrap-kwp", "C_UnwrapKey of that DEK (+ C_DestroyObject of the new session key)",
      { CKM_AES_KEY_GEN }, 0, 0, prep_wrap, wrap_init, unwrap_op, raw_wrap_init, raw_unwrap_op },
    { "wrap-kw", "C_WrapKey of a 256-bit DEK under a token KEK, RFC 3394 (CKM_AES_KEY_WRAP)",
      { CKM_AES_KEY_GEN }, 0, 0, prep_wrap, wrap_init, wrap_op, raw_wrap_init, raw_wrap_op },
    { "unwrap-kw", "C_UnwrapKey, RFC 3394 (+ C_DestroyObject)",
      { CKM_AES_KEY_GEN }, 0, 0, prep_wrap, wrap_init, unwrap_op, raw_wrap_init, raw_unwrap_op },
    { "envelope-write", "generate a session DEK + wrap it (KWP) + AES-GCM encrypt 4 KiB + destroy",
      { CKM_AES_GCM, CKM_AES_KEY_GEN }, 4096, 0, prep_wrap, env_init, env_write_op, raw_env_init,
      raw_env_write_op },
    { "envelope-read", "unwrap the DEK (KWP) + AES-GCM decrypt 4 KiB + destroy",
      { CKM_AES_GCM, CKM_AES_KEY_GEN }, 4096, W_DEC, prep_wrap, env_init, env_read_op, raw_env_init,
      raw_env_read_op },
    { "keygen-session", "C_GenerateKey of an AES-256 session key (+ C_DestroyObject)",
      { CKM_AES_KEY_GEN }, 0, 0, NULL, session_init, keygen_session_op, NULL, raw_keygen_op },
    { "keygen-token", "C_GenerateKey of a durable AES-256 token key (on disk before CKR_OK)",
      { CKM_AES_KEY_GEN }, 0, 0, NULL, session_init, keygen_token_op, NULL, NULL },
    { "find-label", "C_FindObjectsInit/C_FindObjects/Final by CKA_LABEL among --keys token keys",
      { CKM_AES_KEY_GEN }, 0, W_KEYS, prep_keys, find_init, find_op, NULL, NULL },
    { "open-login", "a fresh process: C_Initialize + C_OpenSession + C_Login, with --keys keys",
      { CKM_AES_KEY_GEN }, 0, W_SPAWN | W_ONE_THREAD | W_KEYS | W_NO_PROCS, prep_keys, NULL, NULL, NULL,
      NULL },
    { "session-open-close", "C_OpenSession + C_CloseSession", { 0 }, 0, 0, NULL, NULL, open_close_op,
      NULL, NULL },
    { "login-logout", "C_Login + C_Logout on an open session (the token's PIN KDF included)", { 0 }, 0,
      W_ONE_THREAD, NULL, login_init, login_op, NULL, NULL },
    { "login-default-kdf", "Custos: C_Login + C_Logout on a token whose PIN uses the default KDF",
      { 0 }, 0, W_ONE_THREAD | W_KDF | W_NO_PROCS, NULL, login_init, login_op, NULL, NULL },
    { "hmac-sha256-4k", "C_SignInit + C_Sign with CKM_SHA256_HMAC over 4 KiB",
      { CKM_SHA256_HMAC, CKM_GENERIC_SECRET_KEY_GEN }, 4096, 0, NULL, hmac_init, hmac_op, raw_hmac_init,
      raw_hmac_op },
    { "sign-rsa2048", "C_Sign with CKM_SHA256_RSA_PKCS, RSA-2048 session key (once the module has it)",
      { CKM_SHA256_RSA_PKCS }, 0, 0, prep_sign, sign_init, sign_op, raw_sign_init,
      raw_sign_op },
    { "sign-ecdsa-p256", "C_Sign with CKM_ECDSA on a 32-byte hash, P-256 session key",
      { CKM_ECDSA }, 0, 0, prep_sign, sign_init, sign_op, raw_sign_init, raw_sign_op },
};

/* ---- options ------------------------------------------------------------------------------------------------ */
#define MAX_TARGETS 8
#define MAX_THREADS 8

static struct {
    const char *module;
    const char *vs[MAX_TARGETS];
    unsigned nvs;
    /* --custos-conf-extra INI lines per module: [0] --module, [i + 1] vs[i] */
    char conf_extra[MAX_TARGETS + 1][1024];
    int last_module;                /* index into conf_extra of the last --module/--vs seen */
    bool raw;
    bool json;
    double seconds;
    unsigned rounds;
    unsigned threads[MAX_THREADS];
    unsigned nthreads;
    unsigned procs;
    const workload *wl[NELEM(WORKLOADS)];
    unsigned nwl;
    bench_prep_opts prep;
    /* child processes */
    const char *child;
    const char *kind;
    const char *target_dir;
} O;

static char self_exe[PATH_MAX];
static bench_target *T[MAX_TARGETS + 2];
static unsigned NT;

static const char *KIND_NAMES[] = { [K_CUSTOS] = "custos", [K_SOFTHSM] = "softhsm2", [K_NSS] = "nss",
                                    [K_GENERIC] = "generic", [K_OPENSSL] = "openssl" };

static const workload *find_workload(const char *name)
{
    for (size_t i = 0; i < NELEM(WORKLOADS); i++)
        if (strcmp(WORKLOADS[i].name, name) == 0)
            return &WORKLOADS[i];
    return NULL;
}

static int parse_workloads(const char *list)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "%s", list);
    O.nwl = 0;
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
        const workload *wl = find_workload(p);
        if (wl == NULL) {
            cli_err("unknown workload '%s' (see custos bench --list)", p);
            return -1;
        }
        if (O.nwl < NELEM(O.wl))
            O.wl[O.nwl++] = wl;
    }
    return O.nwl > 0 ? 0 : -1;
}

static int parse_threads(const char *list)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", list);
    O.nthreads = 0;
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p != NULL; p = strtok_r(NULL, ",", &save)) {
        unsigned long v;
        if (cli_parse_ulong(p, 1, 256, &v) != 0 || O.nthreads == MAX_THREADS) {
            cli_err("--threads: '%s' is not a list of 1..256 (at most %d values)", list, MAX_THREADS);
            return -1;
        }
        O.threads[O.nthreads++] = (unsigned)v;
    }
    return O.nthreads > 0 ? 0 : -1;
}

/* ---- running a workload in this process ------------------------------------------------------------------------ */
static void worker_fini(worker *w)
{
    CK_FUNCTION_LIST_PTR f = w->f;
    if (f != NULL) {
        for (size_t i = 0; i < w->nmade; i++)
            (void)f->C_DestroyObject(w->s, w->made[i]);
        if (w->wl->op == login_op && !(w->wl->flags & W_KDF))
            (void)f->C_Login(w->t->login_s, CKU_USER, (CK_UTF8CHAR_PTR)w->t->pin, strlen(w->t->pin));
        else if (w->s != CK_INVALID_HANDLE)
            (void)f->C_CloseSession(w->s); /* destroys the session's keys */
    }
    free(w->made);
    free(w->in);
    free(w->out);
    free(w->ct);
    EVP_CIPHER_CTX_free(w->ectx);
    EVP_CIPHER_CTX_free(w->wctx);
    EVP_CIPHER_CTX_free(w->uctx);
    EVP_MAC_CTX_free(w->mac);
    EVP_PKEY_CTX_free(w->pctx);
    EVP_PKEY_free(w->pkey);
    OPENSSL_cleanse(w->rkey, sizeof(w->rkey));
    OPENSSL_cleanse(w->rkek, sizeof(w->rkek));
    OPENSSL_cleanse(w->rdek, sizeof(w->rdek));
    fvec_free(&w->lat);
}

static CK_RV do_op(worker *w)
{
    return w->t->kind == K_OPENSSL ? w->wl->raw_op(w) : w->wl->op(w);
}

/* Operations shorter than ~4 us are timed in batches, so the clock does not dominate. */
static CK_RV calibrate(worker *w)
{
    uint64_t t0 = now_ns(), t1 = t0;
    unsigned n = 0;
    while (n < 200 && t1 - t0 < 5000000u) {
        CK_RV rv = do_op(w);
        if (rv != CKR_OK)
            return rv;
        n++;
        t1 = now_ns();
    }
    double per = (double)(t1 - t0) / n;
    w->batch = per >= 4000 ? 1 : (unsigned)(4000 / (per > 1 ? per : 1));
    if (w->batch > 256)
        w->batch = 256;
    return CKR_OK;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    while (!atomic_load(&w->ctl->go))
        sched_yield();
    while (!atomic_load_explicit(&w->ctl->stop, memory_order_relaxed)) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < w->batch; i++) {
            CK_RV rv = do_op(w);
            if (rv != CKR_OK) {
                w->rv = rv;
                return NULL;
            }
        }
        uint64_t t1 = now_ns();
        w->ops += w->batch;
        fvec_push(&w->lat, (double)(t1 - t0) / 1000.0 / w->batch);
    }
    return NULL;
}

typedef struct result {
    enum { RS_NONE, RS_OK, RS_SKIP, RS_ERR } state;
    char note[200];
    uint64_t ops;
    double secs;
    fvec lat;
    fvec ph[6];             /* open-login: load, C_Initialize, slot + C_OpenSession, C_Login, spawn,
                             * and the child's peak resident memory (KiB) once logged in */
} result;

static void set_err(result *r, const bench_target *t, const char *what, CK_RV rv)
{
    r->state = RS_ERR;
    snprintf(r->note, sizeof(r->note), "%s: %s", what ? what : "?",
             t->kind == K_OPENSSL ? "failed" : cli_rv_name(rv));
}

static int run_inproc(bench_target *t, const workload *wl, shared *sh, unsigned threads, double secs,
                      int ready_fd, int go_fd, result *r)
{
    worker *w = calloc(threads, sizeof(*w));
    run_ctl ctl;
    unsigned started = 0;
    int rc = -1;
    if (w == NULL)
        return -1;
    atomic_init(&ctl.stop, 0);
    atomic_init(&ctl.go, 0);
    for (unsigned i = 0; i < threads; i++) {
        w[i] = (worker){ .t = t, .f = t->f, .wl = wl, .sh = sh, .ctl = &ctl, .s = CK_INVALID_HANDLE,
                         .id = (unsigned)getpid() * 64 + i };
        CK_RV rv = CKR_OK;
        if (t->kind == K_OPENSSL)
            rv = wl->raw_init ? wl->raw_init(&w[i]) : CKR_OK;
        else if (wl->init != NULL)
            rv = wl->init(&w[i]);
        if (rv == CKR_OK)
            rv = calibrate(&w[i]);
        if (rv != CKR_OK) {
            set_err(r, t, w[i].what, rv);
            goto out;
        }
    }
    if (ready_fd >= 0) { /* a child process: tell the parent, wait for everybody's start */
        char c = 'R';
        if (write(ready_fd, &c, 1) != 1 || read(go_fd, &c, 1) != 1)
            goto out;
    }
    for (; started < threads; started++)
        if (pthread_create(&w[started].th, NULL, worker_main, &w[started]) != 0)
            break;
    if (started < threads) {
        atomic_store(&ctl.stop, 1);
        snprintf(r->note, sizeof(r->note), "pthread_create failed");
        r->state = RS_ERR;
    }
    uint64_t t0 = now_ns();
    atomic_store(&ctl.go, 1);
    struct timespec ts = { (time_t)secs, (long)((secs - floor(secs)) * 1e9) };
    while (started == threads && nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    atomic_store(&ctl.stop, 1);
    for (unsigned i = 0; i < started; i++)
        pthread_join(w[i].th, NULL);
    double el = (double)(now_ns() - t0) / 1e9;
    if (started < threads)
        goto out;
    for (unsigned i = 0; i < threads; i++) {
        if (w[i].rv != CKR_OK && r->state != RS_ERR)
            set_err(r, t, w[i].what, w[i].rv);
        r->ops += w[i].ops;
        fvec_append(&r->lat, w[i].lat.v, w[i].lat.n);
    }
    r->secs += el;
    if (r->state != RS_ERR)
        r->state = RS_OK;
    rc = r->state == RS_OK ? 0 : -1;
out:
    for (unsigned i = 0; i < threads; i++)
        worker_fini(&w[i]);
    free(w);
    return rc;
}

/* ---- child processes ------------------------------------------------------------------------------------------- */
typedef struct child {
    pid_t pid;
    int to, from;
} child;

static int spawn_child(bench_target *t, const char *mode, const workload *wl, unsigned threads,
                       double secs, child *c)
{
    char thr[16], sec[32], keys[32];
    int in[2] = { -1, -1 }, out[2] = { -1, -1 };
    snprintf(thr, sizeof(thr), "%u", threads);
    snprintf(sec, sizeof(sec), "%.6f", secs);
    snprintf(keys, sizeof(keys), "%lu", bench_nkeys);
    char *argv[] = { "custos", "bench", "--child", (char *)mode, "--kind", (char *)KIND_NAMES[t->kind],
                     "--module", t->kind == K_OPENSSL ? "openssl" : t->path, "--target-dir", t->dir,
                     "--token", t->label, "--pin-file", t->pin_file, "--workload", (char *)wl->name,
                     "--threads", thr, "--seconds", sec, "--keys", keys, NULL };
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0)
        goto fail;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    int rc = posix_spawn(&c->pid, self_exe, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    close(out[1]);
    if (rc != 0) {
        close(in[1]);
        close(out[0]);
        return -1;
    }
    c->to = in[1];
    c->from = out[0];
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
    }
    return -1;
}

static int read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

typedef struct wire {
    uint64_t ops;
    double secs;
    uint64_t nlat;
    int32_t state;
    char note[200];
} wire;

static bool child_ok(pid_t pid)
{
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

/* P processes on one token: each prepares, says ready; all start together on "go". */
static int run_procs(bench_target *t, const workload *wl, unsigned threads, double secs, result *r)
{
    child c[64];
    unsigned n = 0, ok = 0;
    double round_secs = 0;
    uint64_t round_ops = 0;
    for (; n < O.procs; n++)
        if (spawn_child(t, "run", wl, threads, secs, &c[n]) != 0)
            break;
    for (unsigned i = 0; i < n; i++) {
        char b;
        if (read_full(c[i].from, &b, 1) == 0 && b == 'R')
            ok++;
    }
    for (unsigned i = 0; i < n; i++) {
        char g = ok == n ? 'G' : 'X';
        (void)write_full(c[i].to, &g, 1);
    }
    for (unsigned i = 0; i < n; i++) {
        wire h;
        if (ok == n && read_full(c[i].from, &h, sizeof(h)) == 0) {
            if (h.state != RS_OK && r->state != RS_ERR) {
                r->state = RS_ERR;
                snprintf(r->note, sizeof(r->note), "%s", h.note);
            }
            round_ops += h.ops;
            round_secs = h.secs > round_secs ? h.secs : round_secs;
            for (uint64_t k = 0; k < h.nlat; k++) {
                float v;
                if (read_full(c[i].from, &v, sizeof(v)) != 0)
                    break;
                fvec_push(&r->lat, v);
            }
        }
        close(c[i].to);
        close(c[i].from);
        if (!child_ok(c[i].pid) && r->state != RS_ERR) {
            r->state = RS_ERR;
            snprintf(r->note, sizeof(r->note), "a child process failed (its message is above)");
        }
    }
    if (n < O.procs && r->state != RS_ERR) {
        r->state = RS_ERR;
        snprintf(r->note, sizeof(r->note), "could not start %u processes", O.procs);
    }
    r->ops += round_ops;
    r->secs += round_secs;
    if (r->state == RS_NONE)
        r->state = RS_OK;
    return r->state == RS_OK ? 0 : -1;
}

/* open-login: a new process per sample; the child times its own start phases. */
static int run_open_login(bench_target *t, const workload *wl, double secs, result *r)
{
    uint64_t t0 = now_ns(), deadline = t0 + (uint64_t)(secs * 1e9);
    unsigned n = 0;
    while (now_ns() < deadline || n < 3) {
        child c;
        double ph[5];
        uint64_t s0 = now_ns();
        if (spawn_child(t, "open-login", wl, 1, 1, &c) != 0) {
            r->state = RS_ERR;
            snprintf(r->note, sizeof(r->note), "posix_spawn failed");
            return -1;
        }
        close(c.to);
        int rd = read_full(c.from, ph, sizeof(ph));
        close(c.from);
        bool ok = child_ok(c.pid);
        if (rd != 0 || !ok) {
            r->state = RS_ERR;
            snprintf(r->note, sizeof(r->note), "the open-login child failed (its message is above)");
            return -1;
        }
        double spawn = (double)(now_ns() - s0) / 1000.0;
        for (int i = 0; i < 4; i++)
            fvec_push(&r->ph[i], ph[i]);
        fvec_push(&r->ph[4], spawn);
        fvec_push(&r->ph[5], ph[4]);
        fvec_push(&r->lat, ph[1] + ph[2] + ph[3]);
        n++;
    }
    r->ops += n;
    r->secs += (double)(now_ns() - t0) / 1e9;
    r->state = RS_OK;
    return 0;
}

/* ---- output --------------------------------------------------------------------------------------------------- */
static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            putchar('\\');
        if ((unsigned char)*s >= 0x20)
            putchar(*s);
    }
    putchar('"');
}

static bool header_done;

static void print_result(const workload *wl, const bench_target *t, unsigned threads, result *r,
                         const char *mech, double *opsps)
{
    *opsps = NAN;
    if (O.json) {
        printf("{\"type\":");
        json_str(r->state == RS_OK ? "result" : r->state == RS_SKIP ? "skip" : "error");
        printf(",\"workload\":");
        json_str(wl->name);
        printf(",\"target\":");
        json_str(t->name);
        printf(",\"module\":");
        json_str(t->kind == K_OPENSSL ? "openssl" : t->path);
        printf(",\"threads\":%u,\"processes\":%u", threads, O.procs);
    } else if (!header_done) {
        printf("%-18s %-10s %3s %4s %12s %11s %11s %9s  %s\n", "workload", "target", "thr", "proc",
               "ops/s", "median_us", "p99_us", "MB/s", "note");
        header_done = true;
    }
    if (r->state != RS_OK) {
        if (O.json) {
            printf(",\"%s\":", r->state == RS_SKIP ? "reason" : "error");
            json_str(r->note);
            printf("}\n");
        } else {
            printf("%-18s %-10s %3u %4u %12s %11s %11s %9s  %s%s\n", wl->name, t->name, threads, O.procs,
                   "-", "-", "-", "-", r->state == RS_SKIP ? "skipped: " : "error: ", r->note);
        }
        fflush(stdout);
        return;
    }
    double ops = r->secs > 0 ? (double)r->ops / r->secs : 0;
    double med = pct(&r->lat, 0.5), p99 = pct(&r->lat, 0.99);
    double mbs = wl->bytes ? ops * (double)wl->bytes / 1e6 : NAN;
    *opsps = ops;
    if (O.json) {
        printf(",\"ops\":%llu,\"seconds\":%.3f,\"ops_per_s\":%.1f,\"median_us\":%.3f,\"p99_us\":%.3f",
               (unsigned long long)r->ops, r->secs, ops, med, p99);
        if (wl->bytes)
            printf(",\"mb_per_s\":%.1f", mbs);
        if (mech && *mech) {
            printf(",\"mechanism\":");
            json_str(mech);
        }
        if (wl->flags & W_SPAWN)
            printf(",\"load_us\":%.1f,\"initialize_us\":%.1f,\"open_session_us\":%.1f,\"login_us\":%.1f,"
                   "\"process_us\":%.1f,\"peak_rss_kib\":%.0f", pct(&r->ph[0], 0.5), pct(&r->ph[1], 0.5),
                   pct(&r->ph[2], 0.5), pct(&r->ph[3], 0.5), pct(&r->ph[4], 0.5), pct(&r->ph[5], 1.0));
        printf("}\n");
    } else {
        char mb[16] = "-", note[160] = "";
        if (wl->bytes)
            snprintf(mb, sizeof(mb), "%.1f", mbs);
        if (mech && *mech)
            snprintf(note, sizeof(note), "%s", mech);
        if (wl->flags & W_SPAWN)
            snprintf(note, sizeof(note), "medians: dlopen %.0f, C_Initialize %.0f, C_OpenSession %.0f, "
                     "C_Login %.0f, whole process %.0f us; peak RSS %.1f MiB", pct(&r->ph[0], 0.5),
                     pct(&r->ph[1], 0.5), pct(&r->ph[2], 0.5), pct(&r->ph[3], 0.5), pct(&r->ph[4], 0.5),
                     pct(&r->ph[5], 1.0) / 1024);
        printf("%-18s %-10s %3u %4u %12.1f %11.2f %11.2f %9s  %s\n", wl->name, t->name, threads, O.procs,
               ops, med, p99, mb, note);
    }
    fflush(stdout);
}

static void print_ratios(const workload *wl, unsigned threads, const double *opsps)
{
    unsigned others = 0;
    for (unsigned k = 1; k < NT; k++)
        others += !isnan(opsps[k]);
    if (others == 0 || isnan(opsps[0]))
        return;
    if (!O.json)
        printf("%-18s ratio %s/other:", wl->name, T[0]->name);
    for (unsigned k = 1; k < NT; k++) {
        double q = opsps[0] / opsps[k];
        if (isnan(opsps[k]))
            continue;
        if (O.json) {
            printf("{\"type\":\"ratio\",\"workload\":");
            json_str(wl->name);
            printf(",\"threads\":%u,\"processes\":%u,\"a\":", threads, O.procs);
            json_str(T[0]->name);
            printf(",\"b\":");
            json_str(T[k]->name);
            printf(",\"ratio\":%.4f}\n", q);
        } else {
            printf("  %s %.2fx", T[k]->name, q);
        }
    }
    if (!O.json)
        printf("\n");
    fflush(stdout);
}

/* ---- the run ---------------------------------------------------------------------------------------------------- */
static const char *skip_reason(const bench_target *t, const workload *wl)
{
    if (t->kind == K_OPENSSL)
        return wl->raw_op == NULL ? "no raw OpenSSL equivalent" : NULL;
    for (size_t i = 0; i < NELEM(wl->need) && wl->need[i] != 0; i++)
        if (!peer_has_mech(t, wl->need[i]))
            return "mechanism not listed";
    if ((wl->flags & W_KDF) && !t->has_kdf_token)
        return "only on a Custos token the bench prepared";
    if ((wl->flags & W_NO_PROCS) && O.procs > 1)
        return "not with --processes";
    if (wl->flags & W_MSG) {
        CK_MECHANISM_INFO mi;
        CK_FLAGS need = (wl->flags & W_DEC) ? CKF_MESSAGE_DECRYPT : CKF_MESSAGE_ENCRYPT;
        if (t->f->version.major < 3)
            return "no PKCS#11 3.0 function list (message API)";
        if (t->f->C_GetMechanismInfo(t->slot, CKM_AES_GCM, &mi) != CKR_OK || !(mi.flags & need))
            return "CKM_AES_GCM not listed for message encryption";
    }
    return NULL;
}

static int run_workload(const workload *wl, double *opsps_out /* [nthreads][NT] */)
{
    shared sh[MAX_TARGETS + 2];
    result res[MAX_TARGETS + 2];
    const char *mech[MAX_TARGETS + 2];
    int status = 0;
    memset(sh, 0, sizeof(sh));
    for (unsigned k = 0; k < NT; k++) {
        memset(&res[k], 0, sizeof(res[k]));
        const char *why = skip_reason(T[k], wl);
        mech[k] = NULL;
        if (why != NULL) {
            res[k].state = RS_SKIP;
            snprintf(res[k].note, sizeof(res[k].note), "%s", why);
            continue;
        }
        if (T[k]->kind != K_OPENSSL && wl->prep != NULL) {
            CK_RV rv = wl->prep(T[k], &sh[k], wl);
            if (rv == CKR_MECHANISM_INVALID) {
                res[k].state = RS_SKIP;
                snprintf(res[k].note, sizeof(res[k].note), "mechanism not listed");
            } else if (rv != CKR_OK) {
                set_err(&res[k], T[k], "preparing the workload", rv);
            }
            mech[k] = mech_name(sh[k].wrap_mech);
        } else if (T[k]->kind == K_OPENSSL && wl->prep == prep_wrap) {
            mech[k] = wants_kw(wl) ? "AES-256-WRAP" : "AES-256-WRAP-PAD";
        }
    }
    for (unsigned ti = 0; ti < O.nthreads; ti++) {
        unsigned threads = (wl->flags & W_ONE_THREAD) ? 1 : O.threads[ti];
        if ((wl->flags & W_ONE_THREAD) && ti > 0)
            break;
        result r[MAX_TARGETS + 2];
        for (unsigned k = 0; k < NT; k++) {
            r[k] = res[k];
            memset(&r[k].lat, 0, sizeof(r[k].lat));
            memset(r[k].ph, 0, sizeof(r[k].ph));
        }
        for (unsigned round = 0; round < O.rounds; round++) {
            for (unsigned k = 0; k < NT; k++) {
                if (r[k].state == RS_SKIP || r[k].state == RS_ERR)
                    continue;
                double secs = O.seconds / O.rounds;
                if (wl->flags & W_SPAWN)
                    (void)run_open_login(T[k], wl, secs, &r[k]);
                else if (O.procs > 1)
                    (void)run_procs(T[k], wl, threads, secs, &r[k]);
                else
                    (void)run_inproc(T[k], wl, &sh[k], threads, secs, -1, -1, &r[k]);
            }
        }
        double opsps[MAX_TARGETS + 2];
        for (unsigned k = 0; k < NT; k++) {
            print_result(wl, T[k], threads, &r[k], mech[k], &opsps[k]);
            opsps_out[ti * NT + k] = opsps[k];
            if (r[k].state == RS_ERR)
                status = 1;
            fvec_free(&r[k].lat);
            for (size_t i = 0; i < NELEM(r[k].ph); i++)
                fvec_free(&r[k].ph[i]);
        }
        print_ratios(wl, threads, opsps);
    }
    return status;
}

static void print_scaling(const workload *wl, const double *opsps)
{
    if (O.nthreads < 2 || (wl->flags & W_ONE_THREAD))
        return;
    for (unsigned k = 0; k < NT; k++) {
        if (isnan(opsps[k]))
            continue;
        for (unsigned ti = 1; ti < O.nthreads; ti++) {
            double q = opsps[ti * NT + k] / opsps[k];
            if (isnan(q))
                continue;
            if (O.json) {
                printf("{\"type\":\"scaling\",\"workload\":");
                json_str(wl->name);
                printf(",\"target\":");
                json_str(T[k]->name);
                printf(",\"threads\":%u,\"base_threads\":%u,\"ratio\":%.4f}\n", O.threads[ti],
                       O.threads[0], q);
            } else {
                printf("%-18s scaling %s: %u threads %.2fx of %u\n", wl->name, T[k]->name, O.threads[ti],
                       q, O.threads[0]);
            }
        }
    }
}

/* ---- child entry points --------------------------------------------------------------------------------------- */
static bench_kind kind_by_name(const char *s)
{
    for (size_t i = 0; i < NELEM(KIND_NAMES); i++)
        if (strcmp(KIND_NAMES[i], s) == 0)
            return (bench_kind)i;
    return K_GENERIC;
}

static void child_target(bench_target *t)
{
    memset(t, 0, sizeof(*t));
    t->kind = kind_by_name(O.kind ? O.kind : "generic");
    snprintf(t->name, sizeof(t->name), "%s", KIND_NAMES[t->kind]);
    snprintf(t->path, sizeof(t->path), "%s", O.module ? O.module : "");
    snprintf(t->dir, sizeof(t->dir), "%s", O.target_dir ? O.target_dir : "");
    snprintf(t->pin_file, sizeof(t->pin_file), "%s", O.prep.pin_file ? O.prep.pin_file : "");
}

/* The peak resident memory of this process image (VmHWM). getrusage's ru_maxrss is no use here:
 * Linux carries it over exec from the parent, whose sample arrays are large. */
static double peak_rss_kib(void)
{
    char line[256];
    double kib = NAN;
    FILE *f = fopen("/proc/self/status", "re");
    if (f == NULL)
        return NAN;
    while (fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = strtod(line + 6, NULL);
    fclose(f);
    return kib;
}

/* `--child open-login`: times dlopen, C_Initialize, the slot lookup + C_OpenSession and C_Login
 * of a fresh process; writes four doubles (microseconds) to stdout. */
static int child_open_login(void)
{
    bench_target t;
    char err[512];
    double ph[5];
    CK_SESSION_HANDLE s;
    CK_RV rv;
    child_target(&t);
    if (cli_read_pin(t.pin_file, "", t.pin, sizeof(t.pin), err, sizeof(err)) != 0 ||
        peer_configure(&t, err, sizeof(err)) != 0) {
        cli_err("%s", err);
        return 1;
    }
    uint64_t a = now_ns();
    if (cli_module_load(&t.mod, t.path, err, sizeof(err)) != 0) {
        cli_err("%s", err);
        return 1;
    }
    t.f = t.mod.f;
    uint64_t b = now_ns();
    if ((rv = peer_initialize(&t)) != CKR_OK) {
        cli_err("C_Initialize: %s", cli_rv_name(rv));
        return 1;
    }
    uint64_t c = now_ns();
    if ((rv = cli_find_token(t.f, O.prep.token, &t.slot)) != CKR_OK ||
        (rv = t.f->C_OpenSession(t.slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s)) != CKR_OK) {
        cli_err("token '%s': %s", O.prep.token, cli_rv_name(rv));
        return 1;
    }
    uint64_t d = now_ns();
    if ((rv = t.f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)t.pin, strlen(t.pin))) != CKR_OK) {
        cli_err("C_Login: %s", cli_rv_name(rv));
        return 1;
    }
    uint64_t e = now_ns();
    cli_wipe(t.pin, sizeof(t.pin));
    ph[0] = (double)(b - a) / 1e3;
    ph[1] = (double)(c - b) / 1e3;
    ph[2] = (double)(d - c) / 1e3;
    ph[3] = (double)(e - d) / 1e3;
    ph[4] = peak_rss_kib();
    int rc = write_full(1, ph, sizeof(ph)) == 0 ? 0 : 1;
    (void)t.f->C_Logout(s);
    cli_module_unload(&t.mod);
    return rc;
}

/* `--child run`: one process of --processes P. */
static int child_run(void)
{
    bench_target t;
    char err[512];
    shared sh;
    result r;
    wire h;
    int rc = 1;
    child_target(&t);
    memset(&sh, 0, sizeof(sh));
    memset(&r, 0, sizeof(r));
    if (t.kind == K_OPENSSL) {
        snprintf(t.name, sizeof(t.name), "openssl");
    } else if (peer_prepare(&t, &O.prep, true, err, sizeof(err)) != 0) {
        cli_err("%s", err);
        return 1;
    }
    const workload *wl = O.wl[0];
    CK_RV rv = (t.kind != K_OPENSSL && wl->prep) ? wl->prep(&t, &sh, wl) : CKR_OK;
    if (rv != CKR_OK) {
        cli_err("%s: preparing %s: %s", t.name, wl->name, cli_rv_name(rv));
        goto out;
    }
    (void)run_inproc(&t, wl, &sh, O.threads[0], O.seconds, 1, 0, &r);
    memset(&h, 0, sizeof(h));
    h.ops = r.ops;
    h.secs = r.secs;
    h.nlat = r.lat.n;
    h.state = (int32_t)r.state;
    snprintf(h.note, sizeof(h.note), "%s", r.note);
    if (write_full(1, &h, sizeof(h)) == 0 && write_full(1, r.lat.v, r.lat.n * sizeof(float)) == 0)
        rc = r.state == RS_OK ? 0 : 1;
out:
    fvec_free(&r.lat);
    peer_release(&t);
    return rc;
}

/* ---- main ----------------------------------------------------------------------------------------------------------- */
static void list_workloads(void)
{
    for (size_t i = 0; i < NELEM(WORKLOADS); i++)
        printf("%-18s %s%s\n", WORKLOADS[i].name, WORKLOADS[i].help,
               WORKLOADS[i].raw_op ? " [raw OpenSSL too]" : "");
}

static void release_all(void)
{
    for (unsigned k = 0; k < NT; k++) {
        peer_release(T[k]);
        free(T[k]);
    }
    NT = 0;
}

static bool selected(unsigned flag)
{
    for (unsigned i = 0; i < O.nwl; i++)
        if (O.wl[i]->flags & flag)
            return true;
    return false;
}

static int add_target(const char *path, bench_kind kind, const bench_prep_opts *po, const char *extra)
{
    char err[1024];
    bench_target *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return -1;
    T[NT++] = t;
    t->kind = kind;
    t->login_s = CK_INVALID_HANDLE;
    if (kind == K_OPENSSL) {
        snprintf(t->name, sizeof(t->name), "openssl");
        return 0;
    }
    snprintf(t->path, sizeof(t->path), "%s", path);
    if (kind == K_GENERIC) {
        const char *b = strrchr(path, '/');
        snprintf(t->name, sizeof(t->name), "%s", b ? b + 1 : path);
    } else {
        snprintf(t->name, sizeof(t->name), "%s", KIND_NAMES[kind]);
    }
    for (unsigned k = 0; k + 1 < NT; k++) /* two modules of one kind get distinct names */
        if (strcmp(T[k]->name, t->name) == 0)
            snprintf(t->name + strlen(t->name), sizeof(t->name) - strlen(t->name), "-%u", NT);
    if (extra != NULL && extra[0] != '\0') {
        if (kind != K_CUSTOS || po->token != NULL) {
            cli_err("--custos-conf-extra: %s is not a Custos module with a token the bench prepares",
                    path);
            return -1;
        }
        snprintf(t->conf_extra, sizeof(t->conf_extra), "%s", extra);
    }
    if (peer_prepare(t, po, false, err, sizeof(err)) != 0) {
        cli_err("%s", err);
        return -1;
    }
    /* Child processes read the PIN from a file; a PIN typed on the terminal gets a private one. */
    if (t->pin_file[0] == '\0' && (O.procs > 1 || selected(W_SPAWN))) {
        char line[CLI_PIN_MAX + 2];
        snprintf(t->dir, sizeof(t->dir), "/tmp/custos-bench-pin-XXXXXX");
        if (mkdtemp(t->dir) == NULL)
            return -1;
        t->own_dir = true;
        snprintf(t->pin_file, sizeof(t->pin_file), "%s/pin", t->dir);
        snprintf(line, sizeof(line), "%s\n", t->pin);
        int fd = open(t->pin_file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        int bad = fd < 0 || write_full(fd, line, strlen(line)) != 0;
        cli_wipe(line, sizeof(line));
        if (fd >= 0)
            close(fd);
        if (bad)
            return -1;
    }
    return 0;
}

static const struct option LONGOPTS[] = {
    { "module", required_argument, NULL, 'm' },   { "vs", required_argument, NULL, 'v' },
    { "raw-openssl", no_argument, NULL, 'r' },    { "workload", required_argument, NULL, 'w' },
    { "list", no_argument, NULL, 'l' },           { "seconds", required_argument, NULL, 's' },
    { "rounds", required_argument, NULL, 'R' },   { "threads", required_argument, NULL, 't' },
    { "processes", required_argument, NULL, 'p' }, { "keys", required_argument, NULL, 'k' },
    { "token", required_argument, NULL, 'T' },    { "pin-file", required_argument, NULL, 'P' },
    { "nss-dir", required_argument, NULL, 'N' },  { "workdir", required_argument, NULL, 'D' },
    { "json", no_argument, NULL, 'j' },           { "quiet", no_argument, NULL, 'q' },
    { "child", required_argument, NULL, 'C' },    { "kind", required_argument, NULL, 'K' },
    { "target-dir", required_argument, NULL, 'd' }, { "custos-conf-extra", required_argument, NULL, 'X' },
    { NULL, 0, NULL, 0 },
};

/* --custos-conf-extra SECTION.KEY=VALUE -> "[SECTION]\nKEY = VALUE\n" appended to buf. Names are
 * the INI's own ([a-z0-9_]); the value is one line. The module itself rejects an unknown setting. */
static int add_conf_extra(char *buf, size_t cap, const char *arg)
{
    const char *dot = strchr(arg, '.'), *eq = strchr(arg, '=');
    size_t used = strlen(buf);
    bool ok = dot != NULL && eq != NULL && dot > arg && eq > dot + 1 && eq[1] != '\0' &&
              strpbrk(eq + 1, "\n\r[];") == NULL;
    for (const char *c = arg; ok && c < eq; c++)
        ok = c == dot || *c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9');
    int n = ok ? snprintf(buf + used, cap - used, "[%.*s]\n%.*s = %s\n", (int)(dot - arg), arg,
                          (int)(eq - dot - 1), dot + 1, eq + 1) : -1;
    if (n < 0 || (size_t)n >= cap - used) {
        buf[used] = '\0';
        cli_err("--custos-conf-extra: '%s' is not SECTION.KEY=VALUE (lower-case names, one line)", arg);
        return -1;
    }
    return 0;
}

static int parse(int argc, char **argv)
{
    unsigned long ul;
    int c;
    bool list = false;
    O.seconds = 1;
    O.procs = 1;
    O.threads[0] = 1;
    O.nthreads = 1;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", LONGOPTS, NULL)) != -1) {
        switch (c) {
        case 'm': O.module = optarg; O.last_module = 0; break;
        case 'v':
            if (O.nvs == MAX_TARGETS) {
                cli_err("at most %d --vs modules", MAX_TARGETS);
                return 2;
            }
            O.vs[O.nvs++] = optarg;
            O.last_module = (int)O.nvs;
            break;
        case 'X':
            if (add_conf_extra(O.conf_extra[O.last_module], sizeof(O.conf_extra[0]), optarg) != 0)
                return 2;
            break;
        case 'r': O.raw = true; break;
        case 'w':
            if (parse_workloads(optarg) != 0)
                return 2;
            break;
        case 'l': list = true; break;
        case 's':
            if (cli_parse_double(optarg, 0.01, 86400, &O.seconds) != 0) {
                cli_err("--seconds: '%s' is not a number of seconds (0.01..86400)", optarg);
                return 2;
            }
            break;
        case 'R':
            if (cli_parse_ulong(optarg, 1, 1000, &ul) != 0) {
                cli_err("--rounds: '%s' is not 1..1000", optarg);
                return 2;
            }
            O.rounds = (unsigned)ul;
            break;
        case 't':
            if (parse_threads(optarg) != 0)
                return 2;
            break;
        case 'p':
            if (cli_parse_ulong(optarg, 1, 64, &ul) != 0) {
                cli_err("--processes: '%s' is not 1..64", optarg);
                return 2;
            }
            O.procs = (unsigned)ul;
            break;
        case 'k':
            if (cli_parse_ulong(optarg, 1, 100000000, &ul) != 0) {
                cli_err("--keys: '%s' is not 1..100000000", optarg);
                return 2;
            }
            bench_nkeys = ul;
            break;
        case 'T': O.prep.token = optarg; break;
        case 'P': O.prep.pin_file = optarg; break;
        case 'N': O.prep.nss_dir = optarg; break;
        case 'D': O.prep.workdir = optarg; break;
        case 'j': O.json = true; break;
        case 'q': bench_quiet = O.prep.quiet = true; break;
        case 'C': O.child = optarg; break;
        case 'K': O.kind = optarg; break;
        case 'd': O.target_dir = optarg; break;
        default:
            cli_err("unknown or incomplete option '%s' (see custos bench --help)", argv[optind - 1]);
            return 2;
        }
    }
    if (optind < argc) {
        cli_err("unexpected argument '%s' (see custos bench --help)", argv[optind]);
        return 2;
    }
    if (list) {
        list_workloads();
        return 0;
    }
    if (O.child == NULL && O.module == NULL && !O.raw) {
        cli_err("give --module PATH (a PKCS#11 module) or --raw-openssl (see custos bench --help)");
        return 2;
    }
    if (O.child == NULL && O.module == NULL && O.nvs > 0) {
        cli_err("--vs needs --module");
        return 2;
    }
    if (O.prep.pin_file != NULL && O.prep.token == NULL && O.child == NULL) {
        cli_err("--pin-file goes with --token LABEL");
        return 2;
    }
    if (O.nwl == 0)
        for (size_t i = 0; i < NELEM(WORKLOADS); i++)
            O.wl[O.nwl++] = &WORKLOADS[i];
    return -1; /* go on */
}

static int fetch_ciphers(void)
{
    c_gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    c_chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
    c_kw = EVP_CIPHER_fetch(NULL, "AES-256-WRAP", NULL);
    c_kwp = EVP_CIPHER_fetch(NULL, "AES-256-WRAP-PAD", NULL);
    return c_gcm && c_chacha && c_kw && c_kwp ? 0 : -1;
}

int bench_main(int argc, char **argv)
{
    int rc = parse(argc, argv);
    if (rc >= 0)
        return rc;
    signal(SIGPIPE, SIG_IGN);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
    if (n <= 0 || fetch_ciphers() != 0) {
        cli_err(n <= 0 ? "cannot find its own executable" : "OpenSSL lacks AES-GCM, ChaCha20 or AES wrap");
        return 1;
    }
    self_exe[n] = '\0';
    if (O.child != NULL) {
        if (strcmp(O.child, "open-login") == 0)
            return child_open_login();
        return child_run();
    }
    if (O.rounds == 0)
        O.rounds = (O.nvs > 0 || (O.raw && O.module)) ? 3 : 1;
    bench_prep_opts po = O.prep;
    po.want_kdf_token = selected(W_KDF);
    rc = 0;
    if (O.module != NULL && add_target(O.module, peer_kind_of(O.module), &po, O.conf_extra[0]) != 0)
        rc = 1;
    if (O.module == NULL && O.conf_extra[0][0] != '\0') {
        cli_err("--custos-conf-extra needs a Custos --module");
        rc = 2;
    }
    po.token = po.pin_file = po.nss_dir = NULL; /* --token is the first module's */
    for (unsigned i = 0; rc == 0 && i < O.nvs; i++)
        if (add_target(O.vs[i], peer_kind_of(O.vs[i]), &po, O.conf_extra[i + 1]) != 0)
            rc = 1;
    if (rc == 0 && O.raw)
        rc = add_target(NULL, K_OPENSSL, &po, NULL) != 0;
    bool ready = rc == 0;
    for (unsigned i = 0; ready && i < O.nwl; i++) {
        double opsps[MAX_THREADS * (MAX_TARGETS + 2)];
        for (size_t j = 0; j < NELEM(opsps); j++)
            opsps[j] = NAN;
        rc |= run_workload(O.wl[i], opsps);
        print_scaling(O.wl[i], opsps);
    }
    release_all();
    return rc;
}
