/* tok/bytemap.c: GPT-2's bytes_to_unicode. Byte-level BPE vocabularies store every byte as a
 * printable character: the bytes '!'..'~', 0xA1..0xAC and 0xAE..0xFF stand for themselves
 * (as code points), and the remaining 68 bytes, in increasing order, become U+0100, U+0101 ...
 * (so a space is "Ġ" U+0120 and a newline "Ċ" U+010A). Plus a small UTF-8 decoder. */
#include "tok/internal.h"

static bool byte_is_printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
}

/* The code point that stands for byte b. */
static uint32_t byte_cp(uint8_t b)
{
    if (byte_is_printable(b)) return b;
    uint32_t n = 0; /* how many non-printable bytes come before b */
    for (unsigned c = 0; c < b; c++) n += !byte_is_printable(c);
    return 256 + n;
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
    if (cp >= 256 + 68) return -1;
    uint32_t n = cp - 256;
    for (unsigned c = 0; c < 256; c++)
        if (!byte_is_printable(c) && n-- == 0) return (int)c;
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
    if (c >= 0xc2 && c <= 0xdf) n = 2, v = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) n = 3, v = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, v = c & 0x07, min = 0x10000;
    else goto bad;
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
