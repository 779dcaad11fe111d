/* tok/bytemap.c: GPT-2's bytes_to_unicode. Byte-level BPE vocabularies store every byte as a
 * printable character: the bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves
 * (as code points), and the remaining 68 bytes, in increasing order, become U+0100, U+0101 ...
 * (so a space is "Ġ" U+0120 and a newline "Ċ" U+010A). Plus a small UTF-8 decoder. */
#include "tok/internal.h"

static bool byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
}

/* The code point that stands for byte b: the 68 non-printable bytes are 0x00-0x20 (33),
 * 0x7F-0xA0 (34) and 0xAD (1), numbered in that order from U+0100. */
static uint32_t byte_cp(uint8_t b)
{
    if (b <= 0x20) return 256u + b;
    if (b >= 0x7f && b <= 0xa0) return 256u + 33 + (b - 0x7fu);
    if (b == 0xad) return 256u + 67;
    return b;
}

/* Writes the UTF-8 of byte b's stand-in (1 or 2 bytes); returns the length. */
size_t tok_byte_to_utf8(uint8_t b, char dst[2])
{
    uint32_t cp = byte_cp(b);
    if (cp < 0x80) {
        dst[0] = (char)cp;
        return 1;
    }
    dst[0] = (char)(0xc0 | (cp >> 6));
    dst[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

/* The byte that code point cp stands for, or -1. */
int tok_cp_to_byte(uint32_t cp)
{
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp <= 256 + 32) return (int)(cp - 256);
    if (cp <= 256 + 66) return (int)(0x7f + cp - (256 + 33));
    if (cp == 256 + 67) return 0xad;
    return -1;
}

/* Decodes one well-formed UTF-8 sequence (no overlongs, surrogates or > U+10FFFF) at s;
 * returns its length, or 1 with *cp = 0xFFFD for an invalid or truncated one. */
size_t tok_utf8_decode(const char *s, size_t len, uint32_t *cp)
{
    const uint8_t *u = (const uint8_t *)s;
    uint8_t c = u[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, v = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, v = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, v = c & 0x07, min = 0x10000;
    else
        goto bad;
    if (len < n) goto bad;
    for (size_t i = 1; i < n; i++) {
        if ((u[i] & 0xc0) != 0x80) goto bad;
        v = v << 6 | (u[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) goto bad;
    *cp = v;
    return n;
bad:
    *cp = 0xfffd;
    return 1;
}
