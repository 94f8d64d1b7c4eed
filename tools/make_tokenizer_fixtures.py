#!/usr/bin/env python3
"""Golden fixtures for MMTokenizer, produced by open_clip's own tokenizer (SimpleTokenizer, which
runs ftfy, html.unescape and the `regex` module).

    python3 tools/make_tokenizer_fixtures.py   # creates .venv-ref from tools/requirements.txt when missing

Writes Tests/MMTokenizerTests/Fixtures/:
    captions.json   the caption corpus (fixed seed) with, per caption: open_clip's cleaned text,
                    encode() ids, the 77-id row of tokenizer(text) (trailing zeros dropped) and
                    decode(encode()); rows at other context lengths for some captions; decodes of
                    random id sequences
    entities.json   every HTML5 entity name through open_clip's cleaning, in three spellings
    classes.json    the `regex` module's \\p{L}, \\p{N}, \\s and Python's str.isspace as code point ranges
Versions (Python, open_clip, ftfy, regex, Unicode data) and the seed go into each file.

Captions whose ftfy.fix_text result depends on its mojibake repair (fix_encoding) are left out and
counted:
MMTokenizer does not reproduce that step (see README, "Tokenizer").
"""

import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests/MMTokenizerTests/Fixtures"
SEED = 20260523


from reference_env import ensure_reference_env  # noqa: E402

ensure_reference_env("ftfy", "open_clip", "regex")

import html.entities  # noqa: E402
import unicodedata  # noqa: E402

import ftfy  # noqa: E402
import open_clip  # noqa: E402
import regex  # noqa: E402
from open_clip.tokenizer import SimpleTokenizer, _clean_lower  # noqa: E402

# ---------------------------------------------------------------------------------------------
# The corpus

ADJECTIVES = """red green blue yellow small large tiny huge old young happy sad wooden metal
shiny rusty fluffy striped spotted bright dark empty crowded quiet noisy wet dry snowy sunny
cloudy ancient modern broken golden silver purple orange pink brown white black grey tall short
long round square narrow wide busy lonely colorful vintage abstract blurry detailed""".split()
NOUNS = """dog cat bird horse car bicycle train boat airplane tree flower house bridge street city
beach mountain river lake forest field garden kitchen table chair window door book cup bottle
phone computer child woman man girl boy family team crowd market restaurant castle church tower
road sign clock umbrella kite surfboard skateboard pizza sandwich banana apple cake elephant
giraffe zebra bear sheep cow laptop keyboard painting statue fountain""".split()
VERBS = """running sitting standing jumping sleeping eating playing walking flying swimming
holding riding reading looking waiting smiling climbing painting cooking dancing""".split()
PLACES = """on the grass|in the park|near a lake|under a tree|at night|in the snow|on a table|
by the window|in a kitchen|on the beach|in the rain|at sunset|next to a building|in a field|
on a busy street|in front of a house""".replace("\n", "").split("|")
TEMPLATES = [
    "a photo of a {adj} {noun}",
    "a {adj} {noun} {verb} {place}",
    "two {noun}s {verb} {place}",
    "A close-up photo of the {noun}.",
    "an illustration of a {adj} {noun} and a {adj2} {noun2}",
    "{Noun} {verb} {place}, with a {adj} {noun2} in the background",
    "a blurry photo of a {noun}",
    "the {adj} {noun} is {verb} {place}",
    "This is a picture of my {noun}",
    "THE {ADJ} {NOUN} {PLACE}",
]


def plain_english(rng, n):
    out = []
    for _ in range(n):
        t = rng.choice(TEMPLATES)
        adj, adj2 = rng.choice(ADJECTIVES), rng.choice(ADJECTIVES)
        noun, noun2 = rng.choice(NOUNS), rng.choice(NOUNS)
        place = rng.choice(PLACES)
        out.append(t.format(adj=adj, adj2=adj2, noun=noun, noun2=noun2, verb=rng.choice(VERBS),
                            place=place, Noun=noun.capitalize(), ADJ=adj.upper(),
                            NOUN=noun.upper(), PLACE=place.upper()))
    return out


def contractions(rng, n):
    fixed = ["don't do that", "it's a dog's life", "I'm here", "they've gone", "we'll see",
             "she'd know", "you're right", "DON'T STOP", "IT'S MINE", "I'M OK", "rock 'n' roll",
             "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "''", "'''s", "the dogs' toys",
             "o'clock", "y'all'd've", "'sand", "'tis the season", "l'été à l'ombre",
             "can't won't shouldn't", "'S'T'RE'VE'M'LL'D", "!!'s", "a'b'c", "it' s", "' s",
             "it's", "its'", "James's car", "rock'n'roll", "'ll've", "I'd'nt", "'\u017f", "it'\u017f"]
    out = list(fixed)
    words = ["it", "that", "he", "she", "they", "we", "you", "I", "who", "there", "cat", "John"]
    ends = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'LL", "n't"]
    while len(out) < n:
        out.append(" ".join(rng.choice(words) + rng.choice(ends) for _ in range(rng.randint(1, 6))))
    return out[:n]


def numbers_punctuation(rng, n):
    fixed = ["$1,299.99", "3.14159", "2024-05-01 10:30pm", "1/2 cup", "50% off!!!", "#hashtag @user",
             "https://example.com/a?b=c&d=e", "mail me: a.b@c.org", ":-) ;-( <3", "wait...", "a—b – c",
             "(a) [b] {c}", "!!!???", "1st 2nd 3rd 4th", "007", "1,000,000", "+1 (555) 123-4567",
             "¼ ½ ¾", "x² + y³", "Ⅻ ⅻ", "①②③", "٣٤٥ ۱۲۳", "१२३", "๑๒๓", "𝟙𝟚𝟛", "10km/h",
             "v2.0.1-beta", "C++ & C#", "~~~", "___", "...", "--", "?!", "\\path\\to\\file",
             "\"quoted\"", "a/b/c", "1e-5", "0x1F", "-273.15°C", "§ 12 ¶ 3", "†‡•", "© ® ™",
             "€5 £3 ¥100 ₹20", "©2024", "#1", "No.1", "a.m.", "U.S.A.", "e.g., i.e.,"]
    out = list(fixed)
    punct = list("!\"#$%'()*+,-./:;<=>?@[\\]^_`{|}~") + ["...", "--", "!!", "?!", "…", "·"]
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(2, 10)):
            r = rng.random()
            if r < 0.35:
                parts.append(str(rng.randint(0, 10 ** rng.randint(1, 9))))
            elif r < 0.55:
                parts.append(f"{rng.uniform(0, 1000):.{rng.randint(1, 4)}f}")
            elif r < 0.8:
                parts.append(rng.choice(punct) * rng.randint(1, 3))
            else:
                parts.append(rng.choice(NOUNS) + rng.choice(punct))
        out.append(rng.choice([" ", "", " "]).join(parts))
    return out[:n]


ACCENTED = """café naïve résumé façade jalapeño niño señor über Straße Größe Fußgängerübergang
coração ação São Paulo Kraków Łódź zażółć gęślą jaźń Dvořák Příliš žluťoučký kůň Tiếng Việt
Hà Nội phở İstanbul ılık Þingvellir Ærø Øresund Åland smörgåsbord crème brûlée déjà vu
piñata Zürich Malmö Reykjavík Ελλάδα ÉCOLE ÇA NAÏVE ŞİŞLİ ǅemal Bjørn fjörður
mañana Ñandú""".split()


def accents(rng, n):
    out = []
    while len(out) < n:
        words = [rng.choice(ACCENTED) if rng.random() < 0.6 else rng.choice(NOUNS)
                 for _ in range(rng.randint(2, 8))]
        text = " ".join(words)
        form = rng.random()
        if form < 0.3:
            text = unicodedata.normalize("NFD", text)   # decomposed: NFC must recompose
        elif form < 0.4:
            text = text.upper()
        out.append(text)
    return out


SCRIPTS = {
    "cjk": ["東京タワーの夜景", "一只小猫在草地上", "我爱北京天安门", "ひらがなとカタカナ", "今日は良い天気ですね",
            "한국어 문장입니다", "서울의 밤", "漢字かな交じり文", "中文，标点。符号！", "「引用」『二重』",
            "ラーメン🍜を食べる", "日本語 and English mixed", "北京2024年", "ｶﾀｶﾅ半角", "한글 자모 ᄒᆞᆫ",
            "粵語：佢哋喺度", "臺灣 台灣", "𠀀𠀁𪚥", "〇一二三", "ヴァイオリン"],
    "cyrillic": ["Привет, мир!", "Москва — столица России", "ёжик в тумане", "Україна, Київ", "Ђорђе Ђоковић",
                 "БОЛЬШИЕ БУКВЫ", "съешь же ещё этих мягких французских булок", "Қазақстан", "ӘӨҮ"],
    "greek": ["Καλημέρα κόσμε", "ΟΔΥΣΣΕΥΣ", "ΣΊΣΥΦΟΣ ΣΑΣ", "ὁ λόγος", "αβγ ΑΒΓ", "ΌΣΟΣ", "Σ", "ΑΣ.Σ",
              "ΣΑΣ ΣΑΣ", "ἄνθρωπος"],
    "arabic": ["مرحبا بالعالم", "القطة على السجادة", "اللغة العربية ١٢٣", "كِتَابٌ", "ﻻ ﷺ", "سلام 2024"],
    "hebrew": ["שלום עולם", "עִבְרִית", "ירושלים 3000"],
    "devanagari": ["नमस्ते दुनिया", "हिन्दी भाषा", "क्षत्रिय", "संस्कृतम्", "मुंबई १२३"],
    "other": ["สวัสดีครับ", "தமிழ் மொழி", "বাংলা ভাষা", "ქართული ენა", "Հայերեն", "አማርኛ", "ᓀᐦᐃᔭᐍᐏᐣ",
              "ꦗꦮ", "ᚠᚢᚦ", "𐌰𐌱𐌲", "ລາວ", "ខ្មែរ", "မြန်မာ", "සිංහල", "ગુજરાતી", "ಕನ್ನಡ", "తెలుగు",
              "മലയാളം", "ਪੰਜਾਬੀ", "ଓଡ଼ିଆ", "བོད་ཡིག", "ᠮᠣᠩᠭᠣᠯ"],
}


def world_scripts(rng, n):
    pool = [s for group in SCRIPTS.values() for s in group]
    out = list(pool)
    while len(out) < n:
        k = rng.randint(1, 4)
        parts = [rng.choice(pool) for _ in range(k)]
        if rng.random() < 0.4:
            parts.insert(rng.randint(0, k), rng.choice(NOUNS))
        out.append(" ".join(parts))
    return out[:n]


EMOJI = ["🙂", "😀", "❤️", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸", "🇯🇵", "🇩🇪", "🏴󠁧󠁢󠁷󠁬󠁳󠁿", "1️⃣", "#️⃣",
         "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "🐕‍🦺", "☕", "✔️", "⚽", "🎉🎊", "🤷‍♀️", "🫠", "🦀", "🍕", "🌍", "©️", "‼️",
         "🏃🏻‍♂️‍➡️", "🇪🇺", "👁️‍🗨️", "❤️‍🔥", "🧔🏼‍♂️", "😶‍🌫️", "🙇", "🫶🏾"]


def emoji(rng, n):
    out = list(EMOJI)
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            parts.append(rng.choice(EMOJI) if r < 0.6 else rng.choice(NOUNS))
        out.append(rng.choice([" ", ""]).join(parts))
    return out[:n]


def entities(rng, n):
    fixed = ["Tom &amp; Jerry", "&lt;tag&gt;", "caf&eacute;", "&quot;quoted&quot;", "it&#39;s", "it&#x27;s",
             "&amp;amp; double", "&amp;amp;amp; triple", "&amp;lt;b&amp;gt;", "P&EACUTE;REZ", "BUNDESSTRA&SZLIG;E",
             "&ntilde; &Ntilde; &NTILDE; &nTILDE;", "&amp no semicolon", "&lt3", "&copy2024", "&ampx",
             "AT&T", "a & b", "&", "&&", "&;", "&#;", "&#x;", "&#0;", "&#1;", "&#13;", "&#128;", "&#150;",
             "&#x80;", "&#x9D;", "&#xD800;", "&#x110000;", "&#99999999999999999999;", "&#65", "&#x41",
             "&#65abc;", "&#59;", "&#x3b;", "&bogus;", "&Jscr;ohn &HilbertSpace;ancock", "&checkmark;",
             "&hellip; &mdash; &ndash;", "&ldquo;hi&rdquo;", "&lsquo;x&rsquo;", "&nbsp;&nbsp;x", "&#x3000;y",
             "&fflig; &filig;", "&#xFF21;&#xFF22;", "&#x1F600;", "&#128512;", "&NotNestedGreaterGreater;",
             "&CounterClockwiseContourIntegral;", "&abcdefghijklmnopqrstuvwxyzabcdef;", "&#x000000041;",
             "<b>bold</b> &amp; co", "<i>&ldquo;x&rdquo;</i>", "a < b &amp; c", "x &amp;lt; y <",
             "line one <br>\nline &amp;amp; two", "line &amp;amp; one\nline <two> &amp;amp;",
             "&amp;#39;", "&#38;amp;", "&#38;#38;amp;", "&eacute;&EACUTE;&Eacute;", "&frac12; &FRAC12;",
             "&AMP;", "&AMP", "&LT;", "&GT", "&QUOT;", "&Amp;", "&iexcl;Hola!", "&iexclHola", "&notit;",
             "&notin;", "&not it", "&Aacute", "&aacutex", "&#x20AC; &euro;", "&#8364;", "&#x2028;x",
             "&#x85;y", "&#x0d;z", "&#x0b;w", "&#x7f;v", "&#xFDD0;u", "&#xFFFE;t", "&#x1FFFF;s",
             "&Ograve&Oacute;", "&ograve;&OGRAVE;", "&dollar;5", "&#36;5", "&sol;&bsol;", "&NewLine;x",
             "&Tab;y", "&excl;&quest;", "&lowbar;&UnderBar;", "&ThinSpace;&VeryThinSpace;",
             "&zwj;&zwnj;", "&shy;soft", "&lrm;&rlm;", "&#xFEFF;bom", "&#x200B;zw", "&#xFB01;", "&#x2019;s"]
    out = list(fixed)
    names = sorted(html.entities.html5)
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(1, 5)):
            name = rng.choice(names)
            r = rng.random()
            if r < 0.15 and name.endswith(";"):
                name = name.upper()
            parts.append("&" + name if rng.random() < 0.85 else "&amp;" + name)
            if rng.random() < 0.5:
                parts.append(rng.choice(NOUNS))
        out.append(rng.choice([" ", ""]).join(parts))
    return out[:n]


def quotes(rng, n):
    marks = ["“", "”", "‘", "’", "‚", "„", "‛", "‟", "‹", "›", "«", "»", "′", "″", "ʼ", "＂", "＇", "`", "´"]
    out = ["“Hello,” she said.", "it’s", "don’t", "‘single’", "„German“", "«French»", "rock ’n’ roll",
           "5′ 11″", "Hawaiʼi", "ʼs", "it\u2019S"]
    while len(out) < n:
        w = [rng.choice(NOUNS) for _ in range(rng.randint(1, 5))]
        out.append(" ".join(rng.choice(marks) + x + rng.choice(marks) + rng.choice(["s", "", "t", "ll"]) for x in w))
    return out[:n]


def ligatures(rng, n):
    ligs = "ﬀﬁﬂﬃﬄﬅﬆĲĳŉǄǅǆǇǈǉǊǋǌǱǲǳ"
    out = ["ﬁne ﬂower", "ﬀ ﬃ ﬄ", "ﬅ ﬆ", "Ĳsselmeer ĳs", "ŉ", "ǄǅǆǇǈǉǊǋǌǱǲǳ", "oﬃce", "eﬀort", "ﬁ", "Œuvre æsthetic"]
    while len(out) < n:
        w = rng.choice(NOUNS)
        i = rng.randint(0, len(w))
        out.append(" ".join([w[:i] + rng.choice(ligs) + w[i:], rng.choice(NOUNS)]))
    return out[:n]


def fullwidth(rng, n):
    out = ["ＬＯＵＤ　ＮＯＩＳＥＳ", "ｆｕｌｌ　ｗｉｄｔｈ", "０１２３４５", "Ｕﾀｰﾝ", "ｳﾙﾄﾗﾏﾝ", "￥１００", "￦",
           "｡｢｣､･", "ＡＢＣ！？", "＃ｔａｇ", "ｲﾞﾊﾟ", "ﾟﾞ", "￣", "￤", "￨￩￪￫￬￭￮", "ﾠ", "ﾡﾢ", "（括弧）", "［x］"]
    while len(out) < n:
        w = rng.choice(NOUNS) + " " + str(rng.randint(0, 999))
        out.append("".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in w))
    return out[:n]


def controls(rng, n):
    fixed = ["a\x00b", "tab\there", "line\nbreak", "cr\rlf\r\n", "vt\x0bff\x0c", "\x1b[31mred\x1b[0m text",
             "\x1b[1;32mbold green\x1b[m", "\x1b[99x", "\x1b[", "\x1b[٣m", "bell\x07", "del\x7f", "c1\x80\x85\x93x\x94",
             "\x81\x8d\x8f\x90\x9d", "\x9c\x9f", "\ufeffbom", "zero\u200bwidth", "zw\u200dj", "zw\u200cnj",
             "soft\u00adhyphen", "lrm\u200erlm\u200f", "\u202aembed\u202c", "ls\u2028ps\u2029", "nel\x85x",
             "nbsp\u00a0x", "ideo\u3000space", "thin\u2009space", "\u206adeprecated\u206f", "\ufff9annot\ufffb",
             "obj\ufffc", "\x1c\x1d\x1e\x1fseparators", "a\u180eb", "\u2060wj", "\U000e0041tag", "\ufe0fvs16",
             "x\u0301y", "\u0301start", "e\u0301\u0301", "\u2066iso\u2069"]
    out = list(fixed)
    pool = [chr(c) for c in list(range(0, 0x20)) + [0x7F] + list(range(0x80, 0xA0))] + \
           ["\u200b", "\u200d", "\ufeff", "\u2028", "\u00a0", "\u3000", "\x1b[0m", "\r\n", "\u2029", "\ufffc"]
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(2, 6)):
            parts.append(rng.choice(NOUNS) if rng.random() < 0.5 else rng.choice(pool) * rng.randint(1, 2))
        out.append("".join(parts))
    return out[:n]


def blank(rng, n):
    out = ["", " ", "  ", "\t", "\n", "\r\n", "\n\n\n", " \t \n ", "\u3000", "\u00a0", "\u2003\u2009", "\x0b", "\x0c",
           "\x85", "\u2028", "\u00a0\u3000\t", "\x00", "\ufeff", "\x1b[0m", " . "]
    return out[:n]


def long_captions(rng, n):
    out = []
    for k in range(n):
        kind = k % 6
        if kind == 0:
            out.append(" ".join(plain_english(rng, rng.randint(8, 30))))
        elif kind == 1:
            out.append(rng.choice("abcdefghijklmnopqrstuvwxyz") * rng.randint(100, 600))
        elif kind == 2:
            out.append("".join(rng.choice(EMOJI) for _ in range(rng.randint(40, 120))))
        elif kind == 3:
            out.append("".join(str(rng.randint(0, 9)) for _ in range(rng.randint(80, 400))))
        elif kind == 4:
            out.append(" ".join(world_scripts(rng, rng.randint(10, 30))))
        else:
            out.append("".join(rng.choice("abcdefghijklmnopqrstuvwxyzéü東ж") for _ in range(rng.randint(200, 900))))
    return out


def specials(rng, n):
    return ["<start_of_text>", "<end_of_text>", "a <start_of_text> b <end_of_text> c", "<START_OF_TEXT>",
            "x<end_of_text>y", "!<start_of_text>", "<|startoftext|> <|endoftext|>", "<ſtart_of_text>",
            "<end_of_text><end_of_text>", "<start_of_text", "start_of_text>", "&lt;end_of_text&gt;",
            "<\u017fTART_OF_TEXT>", "it'ſ", "ﬅart", "'ſ'S", "Straße STRASSE", "İstanbul ıi", "ΣΑΣ.", "K\u212a"][:n]


def fuzz(rng, n):
    """Random assigned code points (known to Python's Unicode 14 data) between ASCII words."""
    assigned = [c for c in range(0x20, 0x30000)
                if unicodedata.category(chr(c)) not in ("Cn", "Cs", "Co")]
    out = []
    while len(out) < n:
        parts = []
        for _ in range(rng.randint(2, 8)):
            if rng.random() < 0.3:
                parts.append(rng.choice(NOUNS))
            else:
                parts.append("".join(chr(rng.choice(assigned)) for _ in range(rng.randint(1, 6))))
        out.append(rng.choice([" ", ""]).join(parts))
    return out


CATEGORIES = [
    ("plain", plain_english, 600), ("contractions", contractions, 100), ("numbers", numbers_punctuation, 160),
    ("accents", accents, 150), ("scripts", world_scripts, 220), ("emoji", emoji, 150),
    ("entities", entities, 200), ("quotes", quotes, 60), ("ligatures", ligatures, 60),
    ("fullwidth", fullwidth, 60), ("controls", controls, 100), ("blank", blank, 20),
    ("long", long_captions, 90), ("specials", specials, 20), ("fuzz", fuzz, 300),
    ("mojibake", lambda rng, n: MOJIBAKE[:n], 10),
]

# UTF-8 read as Windows-1252/Latin-1: ftfy repairs these, MMTokenizer does not; they are
# counted as dropped, so the fixture shows the gap instead of hiding it.
MOJIBAKE = ["cafÃ©", "â€œquotedâ€\x9d", "SchÃ¶ne GrÃ¼ÃŸe", "voilÃ  le travail", "Ã¼ber",
            "donâ€™t", "âœ” No problems", "Ã\xa0 bientÃ´t", "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "æ—¥æœ¬"]


def ranges(codes):
    out = []
    for c in codes:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def main():
    rng = random.Random(SEED)
    tok = SimpleTokenizer()
    versions = {
        "python": sys.version.split()[0], "open_clip": open_clip.__version__, "ftfy": ftfy.__version__,
        "regex": regex.__version__, "python_unicode": unicodedata.unidata_version, "seed": SEED,
    }

    captions, dropped = [], 0
    for name, make, count in CATEGORIES:
        for text in make(rng, count):
            if ftfy.fix_text(text) != ftfy.fix_text(text, fix_encoding=False):  # mojibake repair: not reproduced
                dropped += 1
                continue
            ids = tok.encode(text)
            row = tok([text])[0].tolist()
            while row and row[-1] == 0:
                row.pop()
            captions.append({"category": name, "text": text, "clean": _clean_lower(text), "ids": ids,
                             "row": row, "decoded": tok.decode(ids)})
    assert len(captions) >= 2000, len(captions)

    lengths = []
    for c in captions[::23]:
        for length in (1, 2, 3, 5, 16):
            row = tok([c["text"]], context_length=length)[0].tolist()
            lengths.append({"text": c["text"], "context_length": length, "row": row})

    decodes = []
    for _ in range(300):
        ids = [rng.randrange(len(tok.encoder)) if rng.random() < 0.5 else rng.randrange(512)
               for _ in range(rng.randint(0, 12))]
        decodes.append({"ids": ids, "text": tok.decode(ids)})

    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "captions.json", "w") as f:
        json.dump({"versions": versions, "dropped_mojibake": dropped, "captions": captions,
                   "context_lengths": lengths, "decodes": decodes}, f, ensure_ascii=True, indent=0)

    names = sorted(html.entities.html5)
    cases = []
    for name in names:
        for text in ("&" + name, "&" + name.upper(), "<&" + name, "x&amp;" + name + "y"):
            cases.append({"text": text, "clean": _clean_lower(text)})
    with open(OUT / "entities.json", "w") as f:
        json.dump({"versions": versions, "cases": cases}, f, ensure_ascii=True, indent=0)

    letter, number, space = regex.compile(r"\p{L}"), regex.compile(r"\p{N}"), regex.compile(r"\s")
    classes = {"L": [], "N": [], "s": [], "isspace": []}
    for c in range(0x110000):
        if 0xD800 <= c <= 0xDFFF:
            continue
        ch = chr(c)
        if letter.match(ch):
            classes["L"].append(c)
        if number.match(ch):
            classes["N"].append(c)
        if space.match(ch):
            classes["s"].append(c)
        if ch.isspace():
            classes["isspace"].append(c)
    with open(OUT / "classes.json", "w") as f:
        json.dump({"versions": versions, **{k: ranges(v) for k, v in classes.items()}}, f)

    by_category = {}
    for c in captions:
        by_category[c["category"]] = by_category.get(c["category"], 0) + 1
    print(f"captions.json: {len(captions)} captions {by_category}; {dropped} dropped (ftfy mojibake repair); "
          f"{len(lengths)} context-length rows; {len(decodes)} decodes")
    print(f"entities.json: {len(cases)} cases; classes.json; versions {versions}")


if __name__ == "__main__":
    main()
