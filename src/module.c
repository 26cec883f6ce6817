/* The exported symbols of custos-pkcs11.so and its function tables: the
 * 2.40 list (C_GetFunctionList, for the p11-kit proxy and older loaders)
 * and the "PKCS 11" 3.2 / 3.0 / 2.40 interfaces (C_GetInterfaceList,
 * C_GetInterface, PKCS#11 3.2 sec. 5.4). Everything else is hidden; the
 * linker version script (module.map) exports these three only. */
#include <string.h>
#include "pkcs11.h"
#include "core/core.h"
#include "api/api.h"

#define EXPORT __attribute__((visibility("default")))
#define FILL(name, args) name,

static CK_FUNCTION_LIST list_2_40 = { { 2, 40 }, CK_PKCS11_FUNCTIONS_2_40(FILL) };
static CK_FUNCTION_LIST_3_0 list_3_0 = { { 3, 0 }, CK_PKCS11_FUNCTIONS_3_0(FILL) };
static CK_FUNCTION_LIST_3_2 list_3_2 = { { 3, 2 }, CK_PKCS11_FUNCTIONS_3_2(FILL) };

static CK_CUSTOS_FUNCTION_LIST list_custos = {
    { 1, 0 },
    C_CustosUserAdd,
    C_CustosUserRemove,
    C_CustosUserSetRoles,
    C_CustosUserSetPIN,
    C_CustosUserEnable,
    C_CustosUserList,
    C_CustosKeyRotate,
    C_CustosKeyRotateDue,
};

static CK_CHAR iface_name[] = "PKCS 11";
static CK_CHAR custos_name[] = CUSTOS_INTERFACE_NAME;

/* Newest first: C_GetInterface without a version returns the first. A
 * child process must call C_Initialize after fork, so no interface claims
 * CKF_INTERFACE_FORK_SAFE. */
static CK_INTERFACE interfaces[] = {
    { iface_name, &list_3_2, 0 },
    { iface_name, &list_3_0, 0 },
    { iface_name, &list_2_40, 0 },
    { custos_name, &list_custos, 0 },
};

#define N_INTERFACES (sizeof(interfaces) / sizeof(interfaces[0]))

static const CK_VERSION *iface_version(const CK_INTERFACE *i)
{
    return (const CK_VERSION *)i->pFunctionList; /* every list starts with it */
}

EXPORT CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList)
{
    if (ppFunctionList == NULL)
        return CKR_ARGUMENTS_BAD;
    *ppFunctionList = &list_2_40;
    return CKR_OK;
}

EXPORT CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount)
{
    if (pulCount == NULL)
        return CKR_ARGUMENTS_BAD;
    if (pInterfacesList == NULL) {
        *pulCount = N_INTERFACES;
        return CKR_OK;
    }
    if (*pulCount < N_INTERFACES) {
        *pulCount = N_INTERFACES;
        return CKR_BUFFER_TOO_SMALL;
    }
    memcpy(pInterfacesList, interfaces, sizeof(interfaces));
    *pulCount = N_INTERFACES;
    return CKR_OK;
}

EXPORT CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                            CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags)
{
    if (ppInterface == NULL)
        return CKR_ARGUMENTS_BAD;
    for (size_t i = 0; i < N_INTERFACES; i++) {
        CK_INTERFACE *it = &interfaces[i];
        if (pInterfaceName != NULL && strcmp((const char *)pInterfaceName, (const char *)it->pInterfaceName) != 0)
            continue;
        const CK_VERSION *v = iface_version(it);
        if (pVersion != NULL && (pVersion->major != v->major || pVersion->minor != v->minor))
            continue;
        if ((it->flags & flags) != flags)
            continue;
        *ppInterface = it;
        return CKR_OK;
    }
    /* sec. 5.4 C_GetInterface: no such interface -> CKR_ARGUMENTS_BAD. */
    return CKR_ARGUMENTS_BAD;
}
