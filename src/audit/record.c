/* One audit record: how an audit_event becomes a row (names for return
 * codes, mechanisms and roles; the decision text), the canonical bytes the
 * chain MAC covers, and the JSON line of export, tail and the syslog
 * mirror. docs/audit.md, "The records table" and "The chain". */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "audit/internal.h"
#include "util/be.h"
#include "util/ckr.h"
#include "custos.h"
#include "mech/mech.h"

#define CANONICAL_TAG "custos-audit-record-v1"

static const char *const KIND_NAME[] = {
    [AUDIT_EVENT] = "event",
    [AUDIT_DATA] = "data",
    [AUDIT_ALERT] = "alert",
};

static const struct {
    unsigned long bit;
    const char *name;
} ROLE_NAME[] = {
    { CUSTOS_ROLE_ADMIN, "admin" },
    { CUSTOS_ROLE_GENERATE, "generate" },
    { CUSTOS_ROLE_DECRYPT, "decrypt" },
    { CUSTOS_ROLE_AUDIT, "audit" },
};


int64_t audit_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void audit_copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = src == NULL ? 0 : strnlen(src, cap);
    if (n == cap) {
        /* Truncated: never end inside a UTF-8 sequence (back off while the
         * first byte dropped is a continuation byte). */
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--;
    }
    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

void audit_rv_name(CK_RV rv, char *out, size_t cap)
{
    const char *name = ckr_name(rv);
    if (name != NULL)
        audit_copy_str(out, cap, name);
    else
        snprintf(out, cap, "0x%08lx", (unsigned long)rv);
}

static void mech_name(CK_MECHANISM_TYPE m, char *out, size_t cap)
{
    const mech_desc *d;
    if (m == CK_UNAVAILABLE_INFORMATION) {
        out[0] = '\0';
        return;
    }
    d = mech_find(m);
    if (d != NULL)
        audit_copy_str(out, cap, d->name);
    else
        snprintf(out, cap, "0x%08lx", (unsigned long)m);
}

static void roles_text(unsigned long roles, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(ROLE_NAME); i++) {
        if (!(roles & ROLE_NAME[i].bit))
            continue;
        int w = snprintf(out + n, cap - n, "%s%s", n ? "," : "", ROLE_NAME[i].name);
        if (w < 0 || (size_t)w >= cap - n)
            return;
        n += (size_t)w;
    }
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    static const char D[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = D[p[i] >> 4];
        out[2 * i + 1] = D[p[i] & 15];
    }
    out[2 * n] = '\0';
}

void audit_row_from_event(audit_row *r, const audit_ctx *c, const audit_event *e, int64_t now_us)
{
    memset(r, 0, sizeof(*r));
    r->time_us = now_us;
    audit_copy_str(r->kind, sizeof(r->kind),
                   (unsigned)e->kind < ARRAY_LEN(KIND_NAME) ? KIND_NAME[e->kind] : "event");
    memcpy(r->host, c->host, sizeof(r->host));
    memcpy(r->os_user, c->os_user, sizeof(r->os_user));
    r->pid = c->pid;
    memcpy(r->process, c->process, sizeof(r->process));
    audit_copy_str(r->token_user, sizeof(r->token_user), e->user);
    roles_text(e->roles, r->roles, sizeof(r->roles));
    r->session = (int64_t)e->session;
    audit_copy_str(r->function, sizeof(r->function), e->function);
    mech_name(e->mech, r->mechanism, sizeof(r->mechanism));
    r->key_handle = (int64_t)e->key;
    /* The event's arrays may be full without a NUL: copy_str bounds them. */
    audit_copy_str(r->key_label, sizeof(r->key_label), e->key_label);
    audit_copy_str(r->key_id, sizeof(r->key_id), e->key_id);
    audit_copy_str(r->key_family, sizeof(r->key_family), e->key_family);
    r->key_version = (int64_t)e->key_version;
    if (e->has_resource_digest)
        hex(e->resource_digest, sizeof(e->resource_digest), r->resource);
    else
        audit_copy_str(r->resource, sizeof(e->resource_label), e->resource_label);
    audit_rv_name(e->rv, r->rv, sizeof(r->rv));
    if (e->deny_reason == NULL) {
        audit_copy_str(r->decision, sizeof(r->decision), "allowed");
    } else {
        char d[sizeof(r->decision) + 16];
        snprintf(d, sizeof(d), "denied: %s", e->deny_reason);
        audit_copy_str(r->decision, sizeof(r->decision), d);
    }
    r->count = 1;
    r->first_us = now_us;
    r->last_us = now_us;
}

/* ---- canonical bytes ---------------------------------------------------------- */

size_t audit_canonical(const audit_row *r, uint8_t *out, size_t cap)
{
    size_t n = sizeof(CANONICAL_TAG) - 1;
    if (cap < n)
        return 0;
    memcpy(out, CANONICAL_TAG, n);
    for (size_t i = 0; i < AUDIT_NCOLS; i++) {
        const audit_col *c = &AUDIT_COLS[i];
        const char *p = (const char *)r + c->off;
        if (c->type == AUDIT_COL_TEXT) {
            size_t len = strnlen(p, c->size);
            if (cap - n < 4 + len)
                return 0;
            be_put(out + n, len, 4);
            n += 4;
            memcpy(out + n, p, len);
            n += len;
        } else {
            int64_t v;
            if (cap - n < 8)
                return 0;
            memcpy(&v, p, sizeof(v));
            be_put(out + n, (uint64_t)v, 8);
            n += 8;
        }
    }
    return n;
}

/* ---- JSON ------------------------------------------------------------------------ */

void audit_format_time(int64_t us, char out[32])
{
    struct tm tm;
    int64_t s = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        s -= 1;
    }
    time_t t = (time_t)s;
    if (gmtime_r(&t, &tm) == NULL) {
        snprintf(out, 32, "invalid");
        return;
    }
    char buf[96];
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    audit_copy_str(out, 32, buf);
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if none
 * (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned char b = p[0];
    size_t len;
    uint32_t cp, min;
    if (b < 0x80)
        return 1;
    if ((b & 0xe0) == 0xc0) {
        len = 2, cp = b & 0x1f, min = 0x80;
    } else if ((b & 0xf0) == 0xe0) {
        len = 3, cp = b & 0x0f, min = 0x800;
    } else if ((b & 0xf8) == 0xf0) {
        len = 4, cp = b & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

typedef struct jbuf {
    char *p;
    size_t cap, n;
} jbuf;

static void put(jbuf *j, const char *s, size_t len)
{
    if (j->n + len >= j->cap) {
        j->n = j->cap; /* overflow: the caller sees n == cap */
        return;
    }
    memcpy(j->p + j->n, s, len);
    j->n += len;
}

static void puts_(jbuf *j, const char *s)
{
    put(j, s, strlen(s));
}

/* A JSON string: quotes, backslashes and control characters escaped,
 * invalid UTF-8 replaced by U+FFFD, so any stored bytes give valid JSON. */
static void put_str(jbuf *j, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    put(j, "\"", 1);
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(p + i, n - i);
        char esc[8];
        if (l == 0) {
            puts_(j, "\\ufffd");
            i++;
        } else if (p[i] == '"' || p[i] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)p[i];
            put(j, esc, 2);
            i++;
        } else if (p[i] < 0x20 || p[i] == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
            put(j, esc, 6);
            i++;
        } else {
            put(j, (const char *)p + i, l);
            i += l;
        }
    }
    put(j, "\"", 1);
}

size_t audit_row_json(const audit_row *r, char *out, size_t cap)
{
    jbuf j = { out, cap, 0 };
    char num[48], ts[32], hx[2 * AUDIT_MAC_LEN + 1];

    puts_(&j, "{");
    for (size_t i = 0; i < AUDIT_NCOLS; i++) {
        const audit_col *c = &AUDIT_COLS[i];
        const char *p = (const char *)r + c->off;
        size_t nl = strlen(c->name);
        int64_t v;
        if (i > 0)
            puts_(&j, ",");
        /* time_us, first_us, last_us: the RFC 3339 form first, named
         * without the suffix. */
        if (c->type == AUDIT_COL_INT && nl > 3 && strcmp(c->name + nl - 3, "_us") == 0) {
            memcpy(&v, p, sizeof(v));
            audit_format_time(v, ts);
            snprintf(num, sizeof(num), "\"%.*s\":", (int)(nl - 3), c->name);
            puts_(&j, num);
            put_str(&j, ts);
            puts_(&j, ",");
        }
        snprintf(num, sizeof(num), "\"%s\":", c->name);
        puts_(&j, num);
        if (c->type == AUDIT_COL_TEXT) {
            put_str(&j, p);
            continue;
        }
        memcpy(&v, p, sizeof(v));
        if (c->type == AUDIT_COL_UINT)
            snprintf(num, sizeof(num), "%" PRIu64, (uint64_t)v);
        else
            snprintf(num, sizeof(num), "%" PRId64, v);
        puts_(&j, num);
    }
    hex(r->prev_mac, AUDIT_MAC_LEN, hx);
    puts_(&j, ",\"prev_mac\":\"");
    puts_(&j, hx);
    hex(r->mac, AUDIT_MAC_LEN, hx);
    puts_(&j, "\",\"mac\":\"");
    puts_(&j, hx);
    puts_(&j, "\"}\n");
    if (j.n >= cap)
        return 0;
    out[j.n] = '\0';
    return j.n;
}
