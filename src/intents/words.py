"""Writes words.txt, the general-language word frequencies the scope gate compares the pack with.

Run with the `wordfreq` package installed (pip install wordfreq): python3 words.py > words.txt
The words are spelled as `text::normalize` spells messages (lowercase, umlauts spelled out,
accents dropped); a word in both languages keeps its higher frequency.
"""

import re
import unicodedata

import wordfreq

MIN_ZIPF = 3.0


def fold(word):
    word = word.lower()
    for a, b in [("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")]:
        word = word.replace(a, b)
    word = unicodedata.normalize("NFKD", word)
    return "".join(c for c in word if not unicodedata.combining(c))


best = {}
for lang in ["en", "de"]:
    for word in wordfreq.iter_wordlist(lang, "large"):
        zipf = wordfreq.zipf_frequency(word, lang)
        if zipf < MIN_ZIPF:
            break
        folded = fold(word)
        if len(folded) >= 2 and re.fullmatch(r"[a-z][a-z']*", folded):
            best[folded] = max(best.get(folded, 0), zipf)
by_zipf = {}
for word, zipf in best.items():
    by_zipf.setdefault(int(round(zipf * 10)), []).append(word)
print("# General-language word frequencies for English and German (Zipf scale x10: 30 = once per")
print("# million words), words of Zipf >= 3.0, spelled as `text::normalize` spells them. From the")
print("# wordfreq package's data (https://github.com/rspeer/wordfreq, CC-BY-SA 4.0), by words.py.")
for zipf in sorted(by_zipf, reverse=True):
    print(zipf, " ".join(sorted(by_zipf[zipf])))
