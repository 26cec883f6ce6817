/* Slots and tokens. Each initialised token is one store file
 * `token-<slot id>.db` in the store directory, so a slot id never changes
 * when its token is initialised and is the same in every process; one more
 * slot, with the next id, always holds an uninitialised token for
 * C_InitToken (PKCS#11 3.2 sec. 5.5). */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "core/internal.h"
#include "crypto/crypto.h"
#include "util/secmem.h"

static void token_path(char *out, size_t n, CK_SLOT_ID id)
{
    snprintf(out, n, "%s/token-%lu.db", lib.cfg.store_path, (unsigned long)id);
}

static token *token_new(CK_SLOT_ID id)
{
    token *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->slot_id = id;
    token_path(t->path, sizeof(t->path), id);
    pthread_mutex_init(&t->lock, NULL);
    hmap_init(&t->cache);
    hmap_init(&t->sobjs);
    hmap_init(&t->counters);
    t->next_sobj = 1;
    return t;
}

/* Every session object of the token, released (t->lock held). */
static void session_objects_drop_locked(token *t)
{
    size_t pos = 0;
    uint64_t key;
    void *val;
    while (hmap_next(&t->sobjs, &pos, &key, &val))
        object_unref(val);
    hmap_free(&t->sobjs);
}

void token_free(token *t)
{
    if (t == NULL)
        return;
    pthread_mutex_lock(&t->lock);
    login_clear_locked(t);
    session_objects_drop_locked(t);
    hmap_free(&t->cache);
    family_counters_free_locked(t);
    audit_close(t->audit);
    t->audit = NULL;
    store_close(t->st);
    t->st = NULL;
    pthread_mutex_unlock(&t->lock);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

CK_RV token_open_locked(token *t)
{
    if (t->st != NULL || t->damaged)
        return t->damaged ? t->damage_rv : CKR_OK;
    if (access(t->path, F_OK) != 0)
        return CKR_OK; /* not initialised */
    CK_RV rv = store_open(t->path, &t->st);
    if (rv == CKR_OK)
        rv = store_set_mmap(t->st, (uint64_t)lib.cfg.store_mmap_mib << 20);
    if (rv == CKR_OK)
        rv = store_token_get(t->st, &t->info);
    if (rv == CKR_OK)
        rv = store_data_version(t->st, &t->cache_version);
    if (rv == CKR_OK)
        rv = login_load_salt(t);
    if (rv == CKR_OK)
        audit_token_open_locked(t);
    if (rv != CKR_OK) {
        /* A damaged file is this token's problem only: remember why and
         * answer for it; every other slot goes on working. */
        store_close(t->st);
        t->st = NULL;
        t->damaged = true;
        t->damage_rv = rv;
    }
    return rv;
}

/* Scan the store directory; add slots for token files that appeared and
 * keep exactly one slot with an uninitialised token. */
CK_RV core_slots_refresh(void)
{
    DIR *d = opendir(lib.cfg.store_path);
    if (d == NULL)
        return CKR_DEVICE_ERROR;
    bool seen[CUSTOS_MAX_SLOTS] = { false };
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        unsigned long id;
        char tail[8];
        if (sscanf(e->d_name, "token-%lu.d%7s", &id, tail) == 2 &&
            strcmp(tail, "b") == 0 && id < CUSTOS_MAX_SLOTS)
            seen[id] = true;
    }
    closedir(d);

    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&lib.lock);
    size_t next_free = 0;
    for (size_t i = 0; i < CUSTOS_MAX_SLOTS; i++) {
        if (seen[i] && lib.slots[i] == NULL && (lib.slots[i] = token_new(i)) == NULL)
            rv = CKR_HOST_MEMORY;
        if (seen[i] || (lib.slots[i] != NULL && lib.slots[i]->st != NULL))
            next_free = i + 1;
    }
    /* The uninitialised slot is the first id after the last token. Older
     * empty slots (ids below it whose file is gone) stay listed, still
     * uninitialised, so an id a client holds keeps its meaning. */
    if (next_free < CUSTOS_MAX_SLOTS && lib.slots[next_free] == NULL &&
        (lib.slots[next_free] = token_new(next_free)) == NULL)
        rv = CKR_HOST_MEMORY;
    pthread_mutex_unlock(&lib.lock);
    return rv;
}

CK_RV core_slot_list(bool token_present, CK_SLOT_ID_PTR list, CK_ULONG_PTR count)
{
    /* A size query rescans; a call with a buffer lists what that rescan
     * found, so the two calls agree (sec. 5.5 C_GetSlotList). */
    if (list == NULL)
        GUARD(core_slots_refresh());
    CK_ULONG n = 0;
    CK_RV rv = CKR_OK;
    pthread_mutex_lock(&lib.lock);
    for (size_t i = 0; i < CUSTOS_MAX_SLOTS; i++) {
        if (lib.slots[i] == NULL)
            continue;
        /* Every slot has a token present (an uninitialised one at worst). */
        if (list != NULL && n < *count)
            list[n] = i;
        n++;
    }
    pthread_mutex_unlock(&lib.lock);
    if (list != NULL && n > *count)
        rv = CKR_BUFFER_TOO_SMALL;
    *count = n;
    (void)token_present;
    return rv;
}

CK_RV core_token(CK_SLOT_ID id, token **out)
{
    ENSURE(id < CUSTOS_MAX_SLOTS, CKR_SLOT_ID_INVALID);
    pthread_mutex_lock(&lib.lock);
    token *t = lib.slots[id];
    pthread_mutex_unlock(&lib.lock);
    ENSURE(t != NULL, CKR_SLOT_ID_INVALID);
    *out = t;
    return CKR_OK;
}

CK_RV core_slot_info(CK_SLOT_ID id, CK_SLOT_INFO_PTR info)
{
    token *t;
    GUARD(core_token(id, &t));
    char desc[64];
    snprintf(desc, sizeof(desc), "Custos slot %lu", (unsigned long)id);
    pad_field(info->slotDescription, sizeof(info->slotDescription), desc);
    pad_field(info->manufacturerID, sizeof(info->manufacturerID), CUSTOS_MANUFACTURER);
    info->flags = CKF_TOKEN_PRESENT;
    info->hardwareVersion.major = CUSTOS_VERSION_MAJOR;
    info->hardwareVersion.minor = CUSTOS_VERSION_MINOR;
    info->firmwareVersion = info->hardwareVersion;
    return CKR_OK;
}

/* PIN flags of one user type, from the failure counts of its standard
 * identity and of PIN-selected login, whichever is worse (sec. 3.2
 * CK_TOKEN_INFO; docs/roles.md). */
static CK_FLAGS pin_flags(token *t, const char *name, bool so)
{
    store_user u, c;
    if (store_user_get(t->st, name, &u) != CKR_OK)
        return 0;
    if (store_user_get(t->st, so ? COUNTER_SO : COUNTER_USER, &c) == CKR_OK && c.failures > u.failures)
        u.failures = c.failures;
    unsigned max = lib.cfg.pin_max_retries;
    CK_FLAGS f = so ? 0 : CKF_USER_PIN_INITIALIZED;
    if (u.failures >= max)
        f |= so ? CKF_SO_PIN_LOCKED : CKF_USER_PIN_LOCKED;
    else if (u.failures > 0)
        f |= so ? CKF_SO_PIN_COUNT_LOW : CKF_USER_PIN_COUNT_LOW;
    /* sec. 3.2: COUNT_LOW stays set alongside FINAL_TRY. */
    if (u.failures < max && u.failures + 1 == max)
        f |= so ? CKF_SO_PIN_FINAL_TRY : CKF_USER_PIN_FINAL_TRY;
    secmem_wipe(&u, sizeof(u));
    return f;
}

CK_RV core_token_info(CK_SLOT_ID id, CK_TOKEN_INFO_PTR info)
{
    token *t;
    GUARD(core_token(id, &t));
    pthread_mutex_lock(&t->lock);
    CK_RV rv = token_open_locked(t);
    if (rv != CKR_OK) {
        pthread_mutex_unlock(&t->lock);
        return rv;
    }
    memset(info, 0, sizeof(*info));
    pad_field(info->manufacturerID, sizeof(info->manufacturerID), CUSTOS_MANUFACTURER);
    pad_field(info->model, sizeof(info->model), CUSTOS_MODEL);
    info->flags = CKF_RNG | CKF_LOGIN_REQUIRED;
    if (t->st != NULL) {
        pad_field(info->label, sizeof(info->label), t->info.label);
        pad_field(info->serialNumber, sizeof(info->serialNumber), t->info.serial);
        info->flags |= CKF_TOKEN_INITIALIZED;
        info->flags |= pin_flags(t, USER_NAME_USER, false);
        info->flags |= pin_flags(t, USER_NAME_SO, true);
    } else {
        pad_field(info->label, sizeof(info->label), "");
        pad_field(info->serialNumber, sizeof(info->serialNumber), "");
    }
    info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulSessionCount = t->sessions;
    info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
    info->ulRwSessionCount = t->rw_sessions;
    info->ulMaxPinLen = lib.cfg.pin_max_len;
    info->ulMinPinLen = lib.cfg.pin_min_len;
    info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
    info->hardwareVersion.major = CUSTOS_VERSION_MAJOR;
    info->hardwareVersion.minor = CUSTOS_VERSION_MINOR;
    info->firmwareVersion = info->hardwareVersion;
    memset(info->utcTime, ' ', sizeof(info->utcTime));
    pthread_mutex_unlock(&t->lock);
    return CKR_OK;
}

static bool label_ok(char *out, const uint8_t label[32])
{
    /* The label is 32 blank-padded bytes; store it without the padding.
     * Some clients (PyKCS11) pass a shorter NUL-terminated string: a NUL
     * ends the label. */
    const uint8_t *nul = memchr(label, '\0', 32);
    size_t n = nul != NULL ? (size_t)(nul - label) : 32;
    while (n > 0 && label[n - 1] == ' ')
        n--;
    memcpy(out, label, n);
    out[n] = '\0';
    return true;
}

static CK_RV check_pin_len(size_t pinlen)
{
    ENSURE(pinlen >= lib.cfg.pin_min_len && pinlen <= lib.cfg.pin_max_len, CKR_PIN_LEN_RANGE);
    return CKR_OK;
}

CK_RV core_init_token(CK_SLOT_ID id, const uint8_t *pin, size_t pinlen, const uint8_t label[32])
{
    CK_RV rv;
    token *t;
    uint8_t *mk = NULL;
    store_user so;
    store_token_info info;

    GUARD(core_token(id, &t));
    memset(&info, 0, sizeof(info));
    ENSURE(label_ok(info.label, label), CKR_ARGUMENTS_BAD);
    memset(&so, 0, sizeof(so));
    pthread_mutex_lock(&t->lock);
    GUARD_OUT(token_open_locked(t));
    /* sec. 5.6 C_InitToken: not while any session of this application is
     * open with the token. */
    ENSURE_OUT(t->sessions == 0, CKR_SESSION_EXISTS);
    GUARD_OUT(check_pin_len(pinlen));
    mk = secmem_alloc(STORE_MK_LEN);
    ENSURE_OUT(mk != NULL, CKR_HOST_MEMORY);

    if (t->st != NULL) {
        /* Re-initialisation: only the SO, proven by unsealing the current
         * master key with the PIN given; then everything is wiped. */
        rv = login_verify_pin(t, USER_NAME_SO, pin, pinlen, mk);
        if (rv != CKR_OK)
            core_audit_token_event(t, "C_InitToken", rv);
        GUARD_OUT(rv);
        login_clear_locked(t);
        session_objects_drop_locked(t);
        GUARD_OUT(crypto_random(mk, STORE_MK_LEN));
        GUARD_OUT(login_seal_for(t, USER_NAME_SO, CKU_SO, CUSTOS_ROLE_ADMIN, pin, pinlen, mk, &so));
        GUARD_OUT(store_reinit(t->st, info.label, &so));
        GUARD_OUT(login_make_counters(t));
        GUARD_OUT(store_token_get(t->st, &t->info));
        core_audit_token_event(t, "C_InitToken", CKR_OK);
        goto out;
    }

    /* A new token: random serial and master key, sealed under the SO PIN. */
    uint8_t serial[8];
    GUARD_OUT(crypto_random(serial, sizeof(serial)));
    for (size_t i = 0; i < sizeof(serial); i++)
        snprintf(info.serial + 2 * i, 3, "%02X", serial[i]);
    info.created = (int64_t)time(NULL);
    memcpy(t->info.serial, info.serial, sizeof(info.serial));
    GUARD_OUT(crypto_random(mk, STORE_MK_LEN));
    GUARD_OUT(crypto_random(t->pin_salt, sizeof(t->pin_salt)));
    GUARD_OUT(login_seal_for(t, USER_NAME_SO, CKU_SO, CUSTOS_ROLE_ADMIN, pin, pinlen, mk, &so));
    GUARD_OUT(store_create(t->path, &info, &so, &t->st));
    GUARD_OUT(store_set_mmap(t->st, (uint64_t)lib.cfg.store_mmap_mib << 20));
    GUARD_OUT(login_make_counters(t));
    GUARD_OUT(store_token_get(t->st, &t->info));
    GUARD_OUT(store_data_version(t->st, &t->cache_version));
    audit_token_open_locked(t);
    core_audit_token_event(t, "C_InitToken", CKR_OK);
out:
    pthread_mutex_unlock(&t->lock);
    secmem_free(mk, STORE_MK_LEN);
    secmem_wipe(&so, sizeof(so));
    if (rv == CKR_OK)
        rv = core_slots_refresh();
    return rv;
}
