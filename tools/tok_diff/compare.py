"""Compares two JSON lists of id lists item by item; prints the first differences.
usage: compare.py NAME ITEMS.json REF.json GOT.json; exit status 1 on any difference"""
import json
import sys

name, items, ref, got = sys.argv[1], *(json.load(open(p)) for p in sys.argv[2:5])
bad = [(s, a, b) for s, a, b in zip(items, ref, got) if a != b]
for s, a, b in bad[:5]:
    print('  %r\n    ref %s\n    got %s' % (s, a, b))
print('%s: %d/%d identical' % (name, len(items) - len(bad), len(items)))
sys.exit(1 if bad or len(ref) != len(got) else 0)
