/* PKCS#11 3.2 sec. 5.4, general-purpose functions (the interface functions
 * live in module.c). */
#include <string.h>
#include "api/api.h"

CK_RV C_Initialize(CK_VOID_PTR pInitArgs)
{
    return core_initialize((CK_C_INITIALIZE_ARGS_PTR)pInitArgs);
}

CK_RV C_Finalize(CK_VOID_PTR pReserved)
{
    API_LIBRARY();
    if (pReserved != NULL)
        return CKR_ARGUMENTS_BAD;
    return core_finalize();
}

CK_RV C_GetInfo(CK_INFO_PTR pInfo)
{
    API_LIBRARY();
    if (pInfo == NULL)
        return CKR_ARGUMENTS_BAD;
    memset(pInfo, 0, sizeof(*pInfo));
    pInfo->cryptokiVersion.major = CRYPTOKI_VERSION_MAJOR;
    pInfo->cryptokiVersion.minor = CRYPTOKI_VERSION_MINOR;
    pad_field(pInfo->manufacturerID, sizeof(pInfo->manufacturerID), CUSTOS_MANUFACTURER);
    pad_field(pInfo->libraryDescription, sizeof(pInfo->libraryDescription), CUSTOS_LIBRARY_DESC);
    pInfo->libraryVersion.major = CUSTOS_VERSION_MAJOR;
    pInfo->libraryVersion.minor = CUSTOS_VERSION_MINOR;
    return CKR_OK;
}
