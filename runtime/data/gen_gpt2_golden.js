// Writes the GPT-2 BPE golden file (one JSON object {"text", "ids"} per line) with the
// npm package gpt-3-encoder's own encoder. Not run by the build; rerun after changing TEXTS:
//   node runtime/data/gen_gpt2_golden.js third_party/gpt-3-encoder > tests/golden/gpt2_bpe_tricky.txt
const path = require('path');
const { encode } = require(path.resolve(process.argv[2] || 'third_party/gpt-3-encoder', 'Encoder.js'));
const TEXTS = [
  "Hello world! It's a test. We'll see, they're done; I've got 'em, you'd think I'm ok.",
  "DON'T SHOUT: IT'S YOU'LL WE'VE I'D. mixed 'S 'Re 're're'll'd'm's't 'x ''quoted''",
  "a  b   c\t\tx\n\n\nnew paragraph  \n  trailing   ",
  "   leading spaces",
  "trailing spaces   ",
  " ",
  "\n",
  "\u00a0non-breaking\u3000ideographic\u2028line\u2029para\ufeffbom\u0085nel\u001cfs",
  "naïve café — 日本語のテキスト, Ελληνικά, русский, עִבְרִית, العربية",
  "emoji 🤖🎉 family 👩‍👩‍👧 flags 🇫🇷🇯🇵 skin 👍🏽",
  "In 2024, π≈3.14159 and ½ + x² + ٣٤ (Arabic-Indic) + Ⅻ + ⑦ + 10,000.50",
  "e\u0301 vs é, ŉ, ǅ, ﬁ ligature, ｆｕｌｌｗｉｄｔｈ",
  "foo@bar.com #hashtag $100 ,,,\"\"',\"''\"]], }},\"a\" ).\",\"",
  "def f(x):\n    return x**2  # comment\n\tif x != 0: pass\r\n",
  "Q:\tWhat do you call a fish with no eyes?\nA:\tA fsh.\n%\n",
  "<|endoftext|> is plain text here",
  "1234567890 123 4 56789 0.5 -7 +8e10",
  "Ünïcödé ÀÉÎÕÜ ß ẞ ǆ Ǆ ı İ",
  "\t \t  \n \n",
  "tab\tin\tmiddle and   spaces before\nnewline",
];
for (const text of TEXTS) process.stdout.write(JSON.stringify({ text, ids: encode(text) }) + '\n');
