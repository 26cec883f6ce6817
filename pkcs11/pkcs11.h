/* pkcs11.h -- Custos public PKCS#11 3.2 (Cryptoki) API; the one header clients include.
 * Owns the platform/ABI macros (CK_PTR, CK_DECLARE_FUNCTION*, CK_CALLBACK_FUNCTION,
 * NULL_PTR) and C++ linkage; types live in pkcs11t.h, functions in pkcs11f.h. */
#ifndef _PKCS11_H_
#define _PKCS11_H_ 1

/*
 * Platform conventions (PKCS#11 3.2 spec, section 2 "Platform- and
 * compiler-dependent directives").  Target: Unix / LP64 (Linux x86_64, gcc,
 * clang).  Structures use the compiler's default alignment; there is no
 * #pragma pack on Unix.  Every macro may be predefined by the client to
 * override the default.
 */

/* Pointer declarator used in every *_PTR typedef. */
#ifndef CK_PTR
#define CK_PTR *
#endif

/* Declares a Cryptoki function: CK_DECLARE_FUNCTION(CK_RV, C_Foo)(args). */
#ifndef CK_DECLARE_FUNCTION
#define CK_DECLARE_FUNCTION(returnType, name) returnType name
#endif

/* Declares a pointer to a Cryptoki function (CK_C_xxx typedefs). */
#ifndef CK_DECLARE_FUNCTION_POINTER
#define CK_DECLARE_FUNCTION_POINTER(returnType, name) returnType (* name)
#endif

/* Declares an application callback (CK_NOTIFY, the mutex callbacks). */
#ifndef CK_CALLBACK_FUNCTION
#define CK_CALLBACK_FUNCTION(returnType, name) returnType (* name)
#endif

/* The null pointer. */
#ifndef NULL_PTR
#include <stddef.h>
#define NULL_PTR NULL
#endif

#ifdef __cplusplus
extern "C" {
#endif

#include "pkcs11t.h"
#include "pkcs11f.h"

#ifdef __cplusplus
}
#endif

#endif /* _PKCS11_H_ */
