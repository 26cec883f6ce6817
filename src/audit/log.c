/* The audit log of one token in one process: opening (the audit file, the
 * audit key, who is writing), the write path (one chained transaction, the
 * head advanced in the token, the syslog mirror), and the aggregation of
 * allowed data operations with its flushes. docs/audit.md. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include "audit/internal.h"
#include "util/be.h"
#include "util/secmem.h"

#define DEFAULT_FLUSH_MS 1000
#define DEFAULT_WINDOW_S 60
/* Aggregates held at once: beyond this many distinct groups within one
 * flush interval, operations are written one by one (and a flush is due). */
#define AGG_MAX 4096
#define AGG_START 64
/* Rows a failing flush keeps for the next try; past this the groups stay
 * in the table (their counts keep growing) until writes work again. */
#define STAGING_MAX 65536

static audit_log *forgotten_logs;
static char syslog_path[sizeof(((struct sockaddr_un *)0)->sun_path)] = "/dev/log";

uint64_t audit_mono_coarse_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- opening ------------------------------------------------------------------ */

static void read_context(audit_ctx *c)
{
    struct passwd pw, *res = NULL;
    char buf[1024];
    int fd;
    ssize_t n;

    memset(c, 0, sizeof(*c));
    if (gethostname(c->host, sizeof(c->host) - 1) != 0)
        c->host[0] = '\0';
    c->host[sizeof(c->host) - 1] = '\0';
    if (getpwuid_r(geteuid(), &pw, buf, sizeof(buf), &res) == 0 && res != NULL)
        audit_copy_str(c->os_user, sizeof(c->os_user), pw.pw_name);
    else
        snprintf(c->os_user, sizeof(c->os_user), "%lu", (unsigned long)geteuid());
    c->pid = (int64_t)getpid();
    fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, c->process, sizeof(c->process) - 1);
        close(fd);
        if (n > 0) {
            c->process[n] = '\0';
            c->process[strcspn(c->process, "\n")] = '\0';
        }
    }
}

/* The token's audit key into a->key (*found false when there is none). */
static CK_RV load_key(audit_log *a, bool *found)
{
    uint8_t *v = NULL;
    size_t len = 0;
    CK_RV rv;
    *found = false;
    GUARD(store_meta_get(a->st, AUDIT_KEY_META, &v, &len));
    rv = CKR_OK;
    if (v == NULL)
        goto out;
    ENSURE_OUT(len == AUDIT_KEY_LEN, CKR_DEVICE_ERROR);
    memcpy(a->key, v, AUDIT_KEY_LEN);
    *found = true;
out:
    if (v != NULL) {
        secmem_wipe(v, len);
        free(v);
    }
    return rv;
}

/* Run under the audit file's write lock: of several processes opening a
 * new token's audit at once, exactly one makes the key. */
static CK_RV make_key(void *ctx)
{
    audit_log *a = ctx;
    bool found;
    GUARD(load_key(a, &found));
    if (found)
        return CKR_OK;
    GUARD(crypto_random(a->key, AUDIT_KEY_LEN));
    return store_meta_put(a->st, AUDIT_KEY_META, a->key, AUDIT_KEY_LEN);
}

static void free_log(audit_log *a)
{
    audit_alerts_free(a);
    crypto_hmac_free(a->hmac);
    secmem_free(a->key, AUDIT_KEY_LEN);
    audit_db_close(a->db);
    free(a->groups);
    free(a->slots);
    free(a->staging);
    free(a->ob_rows);
    free(a->line);
    if (a->syslog_fd >= 0)
        close(a->syslog_fd);
    pthread_mutex_destroy(&a->write_mu);
    pthread_mutex_destroy(&a->agg_mu);
    pthread_mutex_destroy(&a->alert_mu);
    pthread_mutex_destroy(&a->syslog_mu);
    free(a);
}

static CK_RV any_row(void *ctx, int64_t id, const uint8_t *row, size_t len)
{
    (void)id;
    (void)row;
    (void)len;
    *(bool *)ctx = true;
    return CKR_OK;
}

CK_RV audit_open(const char *token_path, store *st, const audit_policy *p, audit_log **out)
{
    audit_log *a = NULL;
    char *path = NULL;
    bool found;
    CK_RV rv;

    ENSURE(token_path != NULL && st != NULL && p != NULL && out != NULL, CKR_ARGUMENTS_BAD);
    *out = NULL;
    a = calloc(1, sizeof(*a));
    ENSURE(a != NULL, CKR_HOST_MEMORY);
    pthread_mutex_init(&a->write_mu, NULL);
    pthread_mutex_init(&a->agg_mu, NULL);
    pthread_mutex_init(&a->alert_mu, NULL);
    pthread_mutex_init(&a->syslog_mu, NULL);
    a->syslog_fd = -1;
    a->pol = *p;
    if (a->pol.flush_ms == 0)
        a->pol.flush_ms = DEFAULT_FLUSH_MS;
    if (a->pol.alert_window_s == 0)
        a->pol.alert_window_s = DEFAULT_WINDOW_S;
    a->st = st;
    a->deadline_ns = UINT64_MAX;
    a->key = secmem_alloc(AUDIT_KEY_LEN);
    a->groups_cap = AGG_START;
    a->n_slots = 2 * AGG_START;
    a->groups = calloc(a->groups_cap, sizeof(*a->groups));
    a->slots = calloc(a->n_slots, sizeof(*a->slots));
    a->line = malloc(AUDIT_JSON_MAX);
    ENSURE_OUT(a->key != NULL && a->groups != NULL && a->slots != NULL && a->line != NULL,
               CKR_HOST_MEMORY);
    path = audit_path_for(token_path);
    ENSURE_OUT(path != NULL, CKR_HOST_MEMORY);
    GUARD_OUT(audit_db_open(path, true, &a->db));
    GUARD_OUT(load_key(a, &found));
    if (!found)
        GUARD_OUT(audit_db_serialised(a->db, make_key, a));
    GUARD_OUT(crypto_hmac_new(MD_SHA256, a->key, AUDIT_KEY_LEN, &a->hmac));
    read_context(&a->ctx);
    /* Records another process left in the outbox (it was killed before
     * draining them): this one drains them with its first flush. */
    found = false;
    GUARD_OUT(store_outbox_read(a->st, 0, 1, any_row, &found));
    if (found) {
        a->ob_pending = 1;
        a->deadline_ns = 0;
    }
    *out = a;
    a = NULL;
out:
    if (a != NULL)
        free_log(a);
    free(path);
    return rv;
}

void audit_close(audit_log *a)
{
    if (a == NULL)
        return;
    /* Nobody to tell about a failure here: what could not be written is
     * lost, which is what `required` exists to prevent earlier. */
    CK_RV rv = audit_flush(a, true);
    (void)rv;
    free_log(a);
}

/* In the child: the parent's log is left alone (its mutexes may be held by
 * threads the child does not have) and kept reachable. */
void audit_forget_after_fork(audit_log *a)
{
    if (a == NULL)
        return;
    audit_db_forget_after_fork(a->db);
    a->forgotten = __atomic_load_n(&forgotten_logs, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&forgotten_logs, &a->forgotten, a, true,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

void audit_fork_prepare(void)
{
    audit_db_fork_prepare();
}

void audit_fork_release(void)
{
    audit_db_fork_release();
}

/* ---- syslog ----------------------------------------------------------------------- */

void audit_syslog_set_path(const char *path)
{
    audit_copy_str(syslog_path, sizeof(syslog_path), path);
}

static int syslog_connect(void)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, syslog_path, sizeof(sa.sun_path));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Straight to the socket, as syslog(3) does, but without openlog(): a
 * library must not change its host application's ident or facility. */
void audit_syslog(audit_log *a, int priority, const char *msg)
{
    char hdr[64], ts[32];
    struct tm tm;
    time_t now = time(NULL);
    size_t mlen = strlen(msg);
    struct iovec iov[2];

    if (mlen > 0 && msg[mlen - 1] == '\n')
        mlen--;
    if (localtime_r(&now, &tm) == NULL || strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm) == 0)
        ts[0] = '\0';
    snprintf(hdr, sizeof(hdr), "<%d>%s custos[%lld]: ", LOG_AUTHPRIV | (priority & LOG_PRIMASK),
             ts, (long long)a->ctx.pid);
    iov[0].iov_base = hdr;
    iov[0].iov_len = strlen(hdr);
    iov[1].iov_base = (void *)msg;
    iov[1].iov_len = mlen;
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
    pthread_mutex_lock(&a->syslog_mu);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (a->syslog_fd < 0)
            a->syslog_fd = syslog_connect();
        if (a->syslog_fd < 0)
            break;
        if (sendmsg(a->syslog_fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0)
            break;
        /* The daemon restarted (the socket was replaced): reconnect once.
         * A full queue (EAGAIN) drops the message: the mirror never stalls
         * the module. */
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        close(a->syslog_fd);
        a->syslog_fd = -1;
    }
    pthread_mutex_unlock(&a->syslog_mu);
}

/* ---- the outbox ---------------------------------------------------------------------- */

void audit_outbox_row(audit_log *a, const audit_event *e, audit_row *row)
{
    audit_row_from_event(row, &a->ctx, e, audit_now_us());
}

/* Lower the flush deadline to t (never raise it: an aggregate may be due
 * sooner). */
static void deadline_at_most(audit_log *a, uint64_t t)
{
    uint64_t cur = __atomic_load_n(&a->deadline_ns, __ATOMIC_RELAXED);
    while (t < cur && !__atomic_compare_exchange_n(&a->deadline_ns, &cur, t, true,
                                                   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

void audit_outbox_added(audit_log *a)
{
    if (a == NULL)
        return;
    uint64_t p = __atomic_add_fetch(&a->ob_pending, 1, __ATOMIC_RELAXED);
    deadline_at_most(a, p >= OUTBOX_BATCH ? 0
                                          : audit_mono_coarse_ns() +
                                                (uint64_t)a->pol.flush_ms * 1000000u);
}

/* What a drain has taken so far. */
typedef struct take_ctx {
    audit_log *a;
    size_t n;
    int64_t last_id;
    uint8_t last_hash[32];
    /* checking the audit file's note: */
    int64_t want_id;
    const uint8_t *want_hash;
    bool match;
} take_ctx;

static CK_RV check_note(void *ctx, int64_t id, const uint8_t *row, size_t len)
{
    take_ctx *t = ctx;
    uint8_t h[32];
    GUARD(crypto_md_oneshot(MD_SHA256, row, len, h));
    t->match = id == t->want_id && memcmp(h, t->want_hash, sizeof(h)) == 0;
    return CKR_OK;
}

static CK_RV take_row(void *ctx, int64_t id, const uint8_t *row, size_t len)
{
    take_ctx *t = ctx;
    audit_log *a = t->a;
    if (t->n == a->ob_cap) {
        size_t cap = a->ob_cap ? 2 * a->ob_cap : 64;
        audit_row *r = realloc(a->ob_rows, cap * sizeof(*r));
        ENSURE(r != NULL, CKR_HOST_MEMORY);
        a->ob_rows = r;
        a->ob_cap = cap;
    }
    audit_row *r = &a->ob_rows[t->n];
    if (!audit_row_unpack(row, len, r)) {
        /* Only a hand-edited token file has one: say so in the chain
         * instead of stopping every drain after it. */
        audit_event e;
        memset(&e, 0, sizeof(e));
        e.kind = AUDIT_EVENT;
        e.function = "audit outbox";
        e.mech = CK_UNAVAILABLE_INFORMATION;
        e.user = "";
        e.rv = CKR_DEVICE_ERROR;
        e.deny_reason = "malformed record in the token's outbox";
        audit_row_from_event(r, &a->ctx, &e, audit_now_us());
    }
    GUARD(crypto_md_oneshot(MD_SHA256, row, len, t->last_hash));
    t->last_id = id;
    t->n++;
    return CKR_OK;
}

/* Inside the audit file's write transaction: chain what the outbox holds
 * beyond what this file already took. The file notes the id and SHA-256 of
 * the last outbox row it took (OUTBOX_NOTE); when that row is still in the
 * outbox, its delete from the token file was lost (a crash or power cut
 * after this file's commit), so every row up to it is skipped, and deleted
 * with this drain. *upto: the outbox rows now in the chain; *more: rows
 * were left for another drain. */
static CK_RV outbox_take_locked(audit_log *a, size_t *n, int64_t *upto, bool *more)
{
    uint8_t note[8 + 32];
    size_t len = 0;
    bool found = false;
    take_ctx t = { .a = a };

    *n = 0;
    *upto = 0;
    *more = false;
    GUARD(audit_db_meta_get_locked(a->db, OUTBOX_NOTE, note, sizeof(note), &len, &found));
    if (found && len == sizeof(note)) {
        t.want_id = (int64_t)be_get(note, 8);
        t.want_hash = note + 8;
        if (t.want_id > 0)
            GUARD(store_outbox_read(a->st, t.want_id - 1, 1, check_note, &t));
        if (t.match)
            *upto = t.want_id;
    }
    GUARD(store_outbox_read(a->st, *upto, OUTBOX_TAKE, take_row, &t));
    *more = t.n == OUTBOX_TAKE;
    if (t.n == 0)
        return CKR_OK;
    GUARD(audit_db_append_locked(a->db, a->ob_rows, t.n, audit_chain_seal, a->hmac));
    be_put(note, (uint64_t)t.last_id, 8);
    memcpy(note + 8, t.last_hash, 32);
    GUARD(audit_db_meta_put_locked(a->db, OUTBOX_NOTE, note, sizeof(note)));
    *n = t.n;
    *upto = t.last_id;
    return CKR_OK;
}

static void mirror(audit_log *a, const audit_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (audit_row_json(&rows[i], a->line, AUDIT_JSON_MAX) > 0)
            audit_syslog(a, LOG_INFO, a->line);
}

/* ---- the write path ----------------------------------------------------------------- */

CK_RV audit_write_locked(audit_log *a, audit_row *rows, size_t n)
{
    CK_RV rv, crv, hrv;
    uint8_t tag[AUDIT_MAC_LEN] = { 0 };
    uint64_t pend = __atomic_load_n(&a->ob_pending, __ATOMIC_RELAXED);
    size_t nd = 0;
    int64_t upto = 0;
    bool more = false;

    if (n == 0 && pend == 0)
        return CKR_OK;
    rv = audit_db_begin(a->db);
    if (rv == CKR_OK) {
        /* The outbox first: this process's own records keep their order. */
        if (pend > 0)
            rv = outbox_take_locked(a, &nd, &upto, &more);
        if (rv == CKR_OK)
            rv = audit_db_append_locked(a->db, rows, n, audit_chain_seal, a->hmac);
        crv = audit_db_end(a->db, rv == CKR_OK);
        if (rv == CKR_OK)
            rv = crv;
    }
    __atomic_store_n(&a->fail_rv, rv, __ATOMIC_RELAXED);
    GUARD(rv);
    if (pend > 0 && !more)
        __atomic_sub_fetch(&a->ob_pending, pend, __ATOMIC_RELAXED);
    if (more)
        deadline_at_most(a, 0);
    /* The records are durable now. If the head cannot move (the token file
     * is busy or failing), they stay unsealed until the next write moves
     * it past them; verify reports them as such, not as tampering. The
     * outbox rows they came from go in the same token transaction. */
    const audit_row *last = n > 0 ? &rows[n - 1] : nd > 0 ? &a->ob_rows[nd - 1] : NULL;
    if (last != NULL || upto > 0) {
        hrv = last != NULL ? audit_chain_head_tag(a->hmac, last->seq, last->mac, tag) : CKR_OK;
        if (hrv == CKR_OK)
            hrv = store_audit_head_advance(a->st, last != NULL ? (uint64_t)last->seq : 0,
                                           last != NULL ? last->mac : tag, tag, upto);
        (void)hrv;
    }
    if (a->pol.syslog) {
        mirror(a, a->ob_rows, nd);
        mirror(a, rows, n);
    }
    return CKR_OK;
}

static CK_RV write_one(audit_log *a, const audit_event *e)
{
    audit_row row;
    audit_row_from_event(&row, &a->ctx, e, audit_now_us());
    pthread_mutex_lock(&a->write_mu);
    CK_RV rv = audit_write_locked(a, &row, 1);
    pthread_mutex_unlock(&a->write_mu);
    return rv;
}

/* ---- aggregation ----------------------------------------------------------------------- */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

static uint64_t group_hash(const audit_event *e)
{
    uint64_t h = 0xcbf29ce484222325ull;
    h = mix(h, e->session);
    h = mix(h, e->key);
    h = mix(h, e->mech);
    h = mix(h, e->rv);
    if (e->has_resource_digest) {
        uint64_t d;
        memcpy(&d, e->resource_digest, sizeof(d));
        h = mix(h, d);
    }
    for (const char *p = e->function; p != NULL && *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    return h;
}

/* Equal as far as the stored (possibly truncated) copy goes. */
static bool same_str(const char *stored, size_t cap, const char *s)
{
    return strncmp(stored, s != NULL ? s : "", cap - 1) == 0;
}

static bool same_group(const agg_group *g, const audit_event *e, uint64_t h)
{
    const audit_event *v = &g->ev;
    return g->hash == h && v->session == e->session && v->key == e->key && v->mech == e->mech &&
           v->rv == e->rv && v->roles == e->roles && v->key_version == e->key_version &&
           v->has_resource_digest == e->has_resource_digest &&
           (!e->has_resource_digest ||
            memcmp(v->resource_digest, e->resource_digest, sizeof(v->resource_digest)) == 0) &&
           same_str(g->function, sizeof(g->function), e->function) &&
           same_str(g->user, sizeof(g->user), e->user) &&
           strncmp(v->key_label, e->key_label, sizeof(v->key_label)) == 0 &&
           strncmp(v->key_id, e->key_id, sizeof(v->key_id)) == 0 &&
           strncmp(v->key_family, e->key_family, sizeof(v->key_family)) == 0 &&
           strncmp(v->resource_label, e->resource_label, sizeof(v->resource_label)) == 0;
}

static void copy_trunc(char *dst, size_t cap, const char *s)
{
    size_t n = s != NULL ? strnlen(s, cap - 1) : 0;
    memcpy(dst, s != NULL ? s : "", n);
    dst[n] = '\0';
}

/* agg_mu held. The group for e, or NULL with *slot where it would go. */
static agg_group *find_locked(audit_log *a, const audit_event *e, uint64_t h, size_t *slot)
{
    size_t mask = a->n_slots - 1, i = (size_t)h & mask;
    while (a->slots[i] != 0) {
        agg_group *g = &a->groups[a->slots[i] - 1];
        if (same_group(g, e, h))
            return g;
        i = (i + 1) & mask;
    }
    *slot = i;
    return NULL;
}

static void reindex_locked(audit_log *a)
{
    size_t mask = a->n_slots - 1;
    memset(a->slots, 0, a->n_slots * sizeof(*a->slots));
    for (size_t k = 0; k < a->n_groups; k++) {
        size_t i = (size_t)a->groups[k].hash & mask;
        while (a->slots[i] != 0)
            i = (i + 1) & mask;
        a->slots[i] = (uint32_t)(k + 1);
    }
}

static bool grow_locked(audit_log *a)
{
    size_t cap = a->groups_cap * 2;
    agg_group *g;
    uint32_t *s;
    if (cap > AGG_MAX)
        return false;
    g = realloc(a->groups, cap * sizeof(*g));
    if (g == NULL)
        return false;
    a->groups = g;
    s = calloc(2 * cap, sizeof(*s));
    if (s == NULL)
        return false;
    free(a->slots);
    a->slots = s;
    a->n_slots = 2 * cap;
    a->groups_cap = cap;
    reindex_locked(a);
    return true;
}

/* The hot path: a hash lookup and an increment; a new group copies the
 * event once. False when the table is full (the caller writes e itself). */
static bool aggregate(audit_log *a, const audit_event *e)
{
    uint64_t h = group_hash(e);
    int64_t now = audit_now_us();
    size_t slot = 0;
    bool ok = true;

    pthread_mutex_lock(&a->agg_mu);
    uint64_t n = e->count ? e->count : 1;
    agg_group *g = find_locked(a, e, h, &slot);
    if (g != NULL) {
        g->count += n;
        g->last_us = now;
        goto out;
    }
    if (a->n_groups == a->groups_cap) {
        if (!grow_locked(a)) {
            /* Full: have the next audit_flush write everything. */
            __atomic_store_n(&a->deadline_ns, 0, __ATOMIC_RELAXED);
            ok = false;
            goto out;
        }
        find_locked(a, e, h, &slot);
    }
    g = &a->groups[a->n_groups];
    memset(g, 0, sizeof(*g));
    g->hash = h;
    g->born_ns = audit_mono_coarse_ns();
    g->first_us = g->last_us = now;
    g->count = n;
    g->ev = *e;
    g->ev.function = NULL;
    g->ev.user = NULL;
    g->ev.deny_reason = NULL;
    copy_trunc(g->function, sizeof(g->function), e->function);
    copy_trunc(g->user, sizeof(g->user), e->user);
    a->slots[slot] = (uint32_t)(++a->n_groups);
    if (a->n_groups == 1)
        deadline_at_most(a, g->born_ns + (uint64_t)a->pol.flush_ms * 1000000u);
out:
    pthread_mutex_unlock(&a->agg_mu);
    return ok;
}

CK_RV audit_record(audit_log *a, const audit_event *e)
{
    if (a == NULL || !a->pol.enabled)
        return CKR_OK;
    ENSURE(e != NULL, CKR_ARGUMENTS_BAD);
    if (e->kind == AUDIT_DATA && e->deny_reason == NULL && !a->pol.each_data_op &&
        aggregate(a, e))
        /* Written later; while writes fail, say so, so that `required`
         * refuses now rather than losing records quietly. */
        return __atomic_load_n(&a->fail_rv, __ATOMIC_RELAXED);
    return write_one(a, e);
}

typedef enum flush_mode { FLUSH_DUE, FLUSH_ALL, FLUSH_SESSION } flush_mode;

static bool due(const audit_log *a, const agg_group *g, flush_mode m, CK_SESSION_HANDLE s,
                uint64_t now_ns)
{
    switch (m) {
    case FLUSH_ALL: return true;
    case FLUSH_SESSION: return g->ev.session == s;
    default: return g->born_ns + (uint64_t)a->pol.flush_ms * 1000000u <= now_ns;
    }
}

/* write_mu and agg_mu held: move the groups to write into a->staging as
 * rows, keep the others, and set the next deadline. */
static CK_RV stage_locked(audit_log *a, flush_mode m, CK_SESSION_HANDLE s)
{
    uint64_t now_ns = audit_mono_coarse_ns();
    uint64_t next = UINT64_MAX, flush_ns = (uint64_t)a->pol.flush_ms * 1000000u;
    int64_t now_us = audit_now_us();
    size_t n_due = 0, keep = 0;

    /* A full table is flushed whole, or every call would scan it again. */
    if (m == FLUSH_DUE && a->n_groups >= AGG_MAX)
        m = FLUSH_ALL;
    for (size_t i = 0; i < a->n_groups; i++) {
        bool d = due(a, &a->groups[i], m, s, now_ns);
        n_due += d;
        if (!d && a->groups[i].born_ns + flush_ns < next)
            next = a->groups[i].born_ns + flush_ns;
    }
    if (n_due == 0) {
        /* The deadline may have been the outbox's, which this flush
         * drains: the aggregates' own is next. */
        __atomic_store_n(&a->deadline_ns, next, __ATOMIC_RELAXED);
        return CKR_OK;
    }
    next = UINT64_MAX;
    ENSURE(a->n_staged + n_due <= STAGING_MAX, CKR_DEVICE_MEMORY);
    if (a->n_staged + n_due > a->staging_cap) {
        size_t cap = a->n_staged + n_due;
        audit_row *r = realloc(a->staging, cap * sizeof(*r));
        ENSURE(r != NULL, CKR_HOST_MEMORY);
        a->staging = r;
        a->staging_cap = cap;
    }
    for (size_t i = 0; i < a->n_groups; i++) {
        agg_group *g = &a->groups[i];
        if (!due(a, g, m, s, now_ns)) {
            if (g->born_ns + flush_ns < next)
                next = g->born_ns + flush_ns;
            a->groups[keep++] = *g;
            continue;
        }
        audit_event ev = g->ev;
        audit_row *r = &a->staging[a->n_staged++];
        ev.function = g->function;
        ev.user = g->user;
        audit_row_from_event(r, &a->ctx, &ev, now_us);
        r->count = (int64_t)g->count;
        r->first_us = g->first_us;
        r->last_us = g->last_us;
    }
    a->n_groups = keep;
    reindex_locked(a);
    __atomic_store_n(&a->deadline_ns, next, __ATOMIC_RELAXED);
    return CKR_OK;
}

static CK_RV flush(audit_log *a, flush_mode m, CK_SESSION_HANDLE s, bool wait)
{
    CK_RV rv, wrv;
    if (wait)
        pthread_mutex_lock(&a->write_mu);
    else if (pthread_mutex_trylock(&a->write_mu) != 0)
        return CKR_OK; /* another thread is flushing right now */
    pthread_mutex_lock(&a->agg_mu);
    rv = stage_locked(a, m, s);
    pthread_mutex_unlock(&a->agg_mu);
    /* The staged rows, after what the outbox holds (nothing to write: no
     * transaction). */
    wrv = audit_write_locked(a, a->staging, a->n_staged);
    if (wrv == CKR_OK) {
        a->n_staged = 0;
    } else {
        /* Keep the rows; try again a flush interval from now. */
        deadline_at_most(a, audit_mono_coarse_ns() + (uint64_t)a->pol.flush_ms * 1000000u);
        rv = wrv;
    }
    pthread_mutex_unlock(&a->write_mu);
    return rv;
}

CK_RV audit_flush(audit_log *a, bool force)
{
    if (a == NULL || !a->pol.enabled)
        return CKR_OK;
    if (!force)
        return audit_flush_due(a, audit_mono_coarse_ns());
    return flush(a, FLUSH_ALL, 0, true);
}

CK_RV audit_flush_due(audit_log *a, uint64_t now_ns)
{
    if (a == NULL || !a->pol.enabled)
        return CKR_OK;
    /* Called on every data operation: nothing but a comparison with the
     * caller's coarse clock read until the oldest aggregate is due. */
    if (now_ns < __atomic_load_n(&a->deadline_ns, __ATOMIC_RELAXED))
        return CKR_OK;
    return flush(a, FLUSH_DUE, 0, false);
}

CK_RV audit_flush_session(audit_log *a, CK_SESSION_HANDLE s)
{
    if (a == NULL || !a->pol.enabled)
        return CKR_OK;
    return flush(a, FLUSH_SESSION, s, true);
}

static CK_RV nothing(void *ctx)
{
    (void)ctx;
    return CKR_OK;
}

CK_RV audit_ready(audit_log *a)
{
    ENSURE(a != NULL, CKR_DEVICE_ERROR);
    return audit_db_serialised(a->db, nothing, NULL);
}
