//! Text classification data: labelled texts read from CSV, a tokenizer, a vocabulary, and
//! a loader that turns them into padded batches of token ids.
//!
//! The pipeline is the textbook one (torchtext's, Keras' `TextVectorization`): a
//! [`TextDataset`] of `(text, label)` rows is split into tokens by [`tokenize`], a
//! [`Vocab`] built from the training texts maps tokens to ids (`<pad>` = 0, `<unk>` = 1),
//! and a [`TextLoader`] encodes every text once and cuts the data into [`TextBatch`]es:
//! ids `[B, T]` padded with `<pad>` to the batch's longest text, the true lengths (what a
//! recurrent layer's `forward_with_lengths` takes, so padding changes nothing), and the
//! labels `[B]` as `f32`, ready for `binary_cross_entropy_with_logits`.
//!
//! Everything is deterministic: the vocabulary orders tokens by frequency, then
//! alphabetically, and the loader shuffles with the same seeded generator as
//! [`DataLoader`](super::DataLoader), so a run is reproducible from its seed.
//!
//! ```
//! use wgrad::data::text::{TextDataset, TextLoader, Vocab, VocabOptions};
//! use wgrad::Device;
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sentiment");
//! let train = TextDataset::read_csv(format!("{dir}/train.csv"))?;
//! assert_eq!(train.len(), 2000);
//! let vocab = Vocab::build(train.texts(), VocabOptions::new());
//! assert_eq!(vocab.encode("The plot was NOT good, zyzzyva!")[4..], [vocab.id("good"), Vocab::UNK]);
//!
//! let mut loader = TextLoader::new(&train, &vocab, 32).shuffle(7);
//! let batch = loader.epoch(&Device::cpu()).next().unwrap();
//! let longest = *batch.lengths.iter().max().unwrap();
//! assert_eq!(batch.tokens.shape(), &[32, longest]); // i32 ids, 0 after each text's end
//! assert_eq!(batch.labels.shape(), &[32]); // f32, 0 or 1
//! # Ok::<(), wgrad::Error>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::random::Generator;
use crate::tensor::Tensor;

// ---- data set ----

/// Labelled texts for binary classification: each row a text and a label in `[0, 1]`
/// (`0.0` negative, `1.0` positive when read from a file).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TextDataset {
    samples: Vec<(String, f32)>,
}

impl TextDataset {
    /// A data set of the given rows. Panics when a label is outside `[0, 1]` (soft labels
    /// in between are allowed, as binary cross-entropy takes them).
    pub fn new(samples: Vec<(String, f32)>) -> TextDataset {
        for (i, (_, label)) in samples.iter().enumerate() {
            assert!((0.0..=1.0).contains(label), "TextDataset::new: row {i} has label {label}, outside [0, 1]");
        }
        TextDataset { samples }
    }

    /// Reads a CSV file whose header names a `text` and a `label` column (in any order,
    /// other columns ignored, names matched without regard to case or surrounding spaces),
    /// with one row per sample after it. Fields follow RFC 4180: a field holding commas,
    /// quotes or line breaks is quoted, and a quote inside it doubled
    /// (`"Good, but ""long""",1`). A label is `0` or `1`, spaces around it allowed; a UTF-8
    /// byte order mark and blank lines are skipped.
    ///
    /// Errors, each naming the file and, for a bad row, its line (counting from 1, the
    /// header being line 1): [`Error::Io`] when the file cannot be read, and
    /// [`Error::Format`] for an empty file, a header without a `text` or `label` column, a
    /// row with fewer fields than the header needs, an empty text, a label other than 0 or
    /// 1, text that is not UTF-8, a quote that is never closed (naming the line it opened
    /// on), or a header with no rows after it.
    pub fn read_csv(path: impl AsRef<Path>) -> Result<TextDataset> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: name.clone(), source })?;
        let format = |reason: String| Error::Format { path: name.clone(), reason };
        // The csv crate ends a quoted field that is never closed at the end of the file,
        // so the rest of the file would become one field and the error, if any, would be
        // about a missing column; say what is wrong instead.
        if let Some(line) = unclosed_quote_line(&bytes) {
            return Err(format(format!("line {line}: a quote opened here is not closed")));
        }
        // Flexible, so that a short row reaches our own check and its message names the
        // missing column, not just the field counts.
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(&bytes[..]);

        let header = reader.headers().map_err(|e| csv_error(&name, &bytes, e))?.clone();
        if header.is_empty() {
            return Err(format("empty file: expected a header line 'text,label' and rows after it".into()));
        }
        let header_line = record_line(&bytes, header.position());
        let column = |wanted: &str| {
            header.iter().position(|field| field.trim().eq_ignore_ascii_case(wanted)).ok_or_else(|| {
                format(format!(
                    "line {header_line}: the header has no '{wanted}' column (it has: {}); expected 'text,label'",
                    header.iter().map(|f| format!("'{f}'")).collect::<Vec<_>>().join(", ")
                ))
            })
        };
        let (text_column, label_column) = (column("text")?, column("label")?);

        let mut samples = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(&name, &bytes, e))?;
            let line = record_line(&bytes, record.position());
            let field = |index: usize, column: &str| {
                record.get(index).ok_or_else(|| {
                    format(format!(
                        "line {line}: missing the '{column}' column (field {} of the header; this row has {} field{})",
                        index + 1,
                        record.len(),
                        if record.len() == 1 { "" } else { "s" }
                    ))
                })
            };
            let (text, label) = (field(text_column, "text")?, field(label_column, "label")?);
            if text.trim().is_empty() {
                return Err(format(format!("line {line}: the text is empty")));
            }
            let label = match label.trim() {
                "0" => 0.0,
                "1" => 1.0,
                other => return Err(format(format!("line {line}: label '{other}' is not 0 or 1"))),
            };
            samples.push((text.to_string(), label));
        }
        if samples.is_empty() {
            return Err(format("the file has a header but no rows".into()));
        }
        Ok(TextDataset { samples })
    }

    /// How many rows there are.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether there are no rows (never, for a data set read from a file).
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Row `index`: its text and label. Panics when out of range.
    pub fn get(&self, index: usize) -> (&str, f32) {
        assert!(index < self.len(), "TextDataset::get: index {index} is out of range for {} rows", self.len());
        let (text, label) = &self.samples[index];
        (text, *label)
    }

    /// All rows, in file order.
    pub fn samples(&self) -> &[(String, f32)] {
        &self.samples
    }

    /// The texts, in file order (what [`Vocab::build`] takes).
    pub fn texts(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.samples.iter().map(|(text, _)| text.as_str())
    }

    /// The labels, in file order.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = f32> + '_ {
        self.samples.iter().map(|&(_, label)| label)
    }

    /// Holds out a random `fraction` of the rows for validation: `(training, validation)`,
    /// drawn as [`validation_split`](super::validation_split) draws (the rows of
    /// `Generator::new(seed).permutation(len)`, the validation rows last). A fraction
    /// outside (0, 1), or one that leaves either part empty, is an `Err`.
    ///
    /// ```
    /// use wgrad::data::text::TextDataset;
    /// let data = TextDataset::new((0..10).map(|i| (format!("text {i}"), (i % 2) as f32)).collect());
    /// let (train, val) = data.validation_split(0.2, 0)?;
    /// assert_eq!((train.len(), val.len()), (8, 2));
    /// # Ok::<(), wgrad::Error>(())
    /// ```
    pub fn validation_split(&self, fraction: f64, seed: u64) -> Result<(TextDataset, TextDataset)> {
        let n = self.len();
        let held_out = super::split::held_out(n, fraction)?;
        let order = crate::random::Generator::new(seed).permutation(n);
        let rows =
            |indices: &[usize]| TextDataset { samples: indices.iter().map(|&i| self.samples[i].clone()).collect() };
        Ok((rows(&order[..n - held_out]), rows(&order[n - held_out..])))
    }

    /// How many rows are labelled 1 (positive): with `len`, the class balance.
    pub fn count_positive(&self) -> usize {
        self.samples.iter().filter(|&&(_, label)| label == 1.0).count()
    }
}

/// The line (counting from 1) on which the record read from `position` in `bytes` begins.
/// The csv crate's own line number is where the previous record ended, before the blank
/// lines it skips, so the start is found here: past those blank lines.
fn record_line(bytes: &[u8], position: Option<&csv::Position>) -> u64 {
    let start = position.map_or(0, |p| p.byte() as usize).min(bytes.len());
    let content = start + bytes[start..].iter().take_while(|&&b| b == b'\n' || b == b'\r').count();
    1 + bytes[..content].iter().filter(|&&b| b == b'\n').count() as u64
}

/// Our error for a failure the csv crate reports while reading `bytes`: its I/O errors stay
/// [`Error::Io`], the rest become [`Error::Format`] with the line where they happened.
fn csv_error(path: &str, bytes: &[u8], error: csv::Error) -> Error {
    if error.is_io_error() {
        if let csv::ErrorKind::Io(source) = error.into_kind() {
            return Error::Io { path: path.to_string(), source };
        }
        unreachable!("is_io_error means the kind is Io");
    }
    let line = error.position().map(|p| format!("line {}: ", record_line(bytes, Some(p)))).unwrap_or_default();
    let reason = match error.kind() {
        // The crate's own message counts fields from 0; ours count them from 1, as lines.
        csv::ErrorKind::Utf8 { err, .. } => format!(
            "{line}field {} is not valid UTF-8 (byte {} of the field is not part of a UTF-8 character)",
            err.field() + 1,
            err.valid_up_to() + 1
        ),
        _ => format!("{line}{error}"),
    };
    Error::Format { path: path.to_string(), reason }
}

/// The line (counting from 1) of a quote that opens a field and is never closed, if there
/// is one. It follows the csv crate's reading with its default settings: a quote opens a
/// quoted field only as the field's first byte; inside, `""` is a quote and a lone `"`
/// closes the field; any later quote in that field, as in an unquoted one, is a plain
/// character; fields end at `,`, records at `\r` or `\n`.
fn unclosed_quote_line(bytes: &[u8]) -> Option<u64> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut line = 1u64;
    let mut at_field_start = true;
    // The line of the opening quote while inside a quoted field.
    let mut open: Option<u64> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match open {
            Some(_) if b == b'"' && bytes.get(i + 1) == Some(&b'"') => i += 1, // an escaped quote
            Some(_) if b == b'"' => open = None,                               // the rest of the field is read unquoted
            Some(_) => {}
            None if b == b'"' && at_field_start => {
                open = Some(line);
                at_field_start = false;
            }
            None => at_field_start = matches!(b, b',' | b'\r' | b'\n'),
        }
        if b == b'\n' {
            line += 1;
        }
        i += 1;
    }
    open
}

// ---- tokenizer ----

/// Splits `text` into lower-case word tokens: at whitespace, then each piece lower-cased
/// (Unicode rules) and stripped of the punctuation around it, that is of every leading and
/// trailing character that is not alphanumeric. Punctuation inside a word stays, so
/// contractions, hyphenated words and numbers are single tokens (`isn't`, `well-made`,
/// `3.5`); pieces made only of punctuation (`--`, `!`) disappear.
///
/// It is the basic English tokenizer of many text-classification tutorials, simple on
/// purpose: a token is what a reader would call a word, and the vocabulary built from it
/// stays small, which matters more for a small data set than splitting off `n't`.
///
/// ```
/// use wgrad::data::text::tokenize;
/// assert_eq!(tokenize("It wasn't BAD -- \"well-made\", even (3.5/5)!"),
///            ["it", "wasn't", "bad", "well-made", "even", "3.5/5"]);
/// ```
pub fn tokenize(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|piece| piece.trim_matches(|c: char| !c.is_alphanumeric()))
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

// ---- vocabulary ----

/// Which tokens a [`Vocab`] keeps: those seen at least `min_freq` times (default 1), and
/// at most `max_size` entries in all, `<pad>` and `<unk>` included (default unlimited),
/// as torchtext's `build_vocab_from_iterator(min_freq, max_tokens)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VocabOptions {
    /// Tokens seen fewer times than this are left out (they encode as `<unk>`).
    pub min_freq: usize,
    /// The largest vocabulary size, the two special tokens included; the most frequent
    /// tokens are kept.
    pub max_size: Option<usize>,
}

impl Default for VocabOptions {
    fn default() -> Self {
        VocabOptions { min_freq: 1, max_size: None }
    }
}

impl VocabOptions {
    /// Every token seen at least once.
    pub fn new() -> VocabOptions {
        VocabOptions::default()
    }

    /// Leaves out tokens seen fewer than `min_freq` times (at least 1).
    pub fn min_freq(mut self, min_freq: usize) -> VocabOptions {
        self.min_freq = min_freq;
        self
    }

    /// Keeps at most `max_size` entries, `<pad>` and `<unk>` included (at least 2).
    pub fn max_size(mut self, max_size: usize) -> VocabOptions {
        self.max_size = Some(max_size);
        self
    }
}

/// A map between tokens and the ids an embedding table is indexed by.
///
/// Id 0 is `<pad>`, what [`TextLoader`] pads batches with (give it to
/// `Embedding::padding_idx`), and id 1 is `<unk>`, what every token outside the vocabulary
/// encodes as. The other tokens follow by decreasing frequency in the texts the vocabulary
/// was built from, ties in alphabetical (code point) order, so the same texts always give
/// the same ids, whatever order they were counted in.
///
/// ```
/// use wgrad::data::text::{Vocab, VocabOptions};
/// let vocab = Vocab::build(["a good film", "a bad film", "A film!"], VocabOptions::new());
/// assert_eq!(vocab.tokens(), ["<pad>", "<unk>", "a", "film", "bad", "good"]);
/// assert_eq!(vocab.encode("a great film"), [2, Vocab::UNK, 3]);
/// assert_eq!(vocab.token(4), "bad");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, i32>,
}

impl Vocab {
    /// The id of `<pad>`, the padding token.
    pub const PAD: i32 = 0;
    /// The id of `<unk>`, the token of every word outside the vocabulary.
    pub const UNK: i32 = 1;
    /// The padding token, id [`Vocab::PAD`].
    pub const PAD_TOKEN: &'static str = "<pad>";
    /// The unknown-word token, id [`Vocab::UNK`].
    pub const UNK_TOKEN: &'static str = "<unk>";

    /// The vocabulary of `texts` (typically the training set's, so that test-time words
    /// the model never saw become `<unk>`), tokenized with [`tokenize`]. Panics when
    /// `min_freq` is 0 or `max_size` below 2.
    pub fn build<S: AsRef<str>>(texts: impl IntoIterator<Item = S>, options: VocabOptions) -> Vocab {
        assert!(options.min_freq >= 1, "Vocab::build: min_freq must be at least 1, got 0");
        if let Some(max) = options.max_size {
            assert!(max >= 2, "Vocab::build: max_size {max} leaves no room for <pad> and <unk> (at least 2)");
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        for text in texts {
            for token in tokenize(text.as_ref()) {
                *counts.entry(token).or_default() += 1;
            }
        }
        let mut by_frequency: Vec<(String, usize)> =
            counts.into_iter().filter(|&(_, count)| count >= options.min_freq).collect();
        by_frequency.sort_unstable_by(|(a, ca), (b, cb)| cb.cmp(ca).then_with(|| a.cmp(b)));
        let room = options.max_size.map_or(usize::MAX, |max| max - 2);
        let words = by_frequency.into_iter().take(room).map(|(token, _)| token);
        Vocab::from_parts(
            [Vocab::PAD_TOKEN.to_string(), Vocab::UNK_TOKEN.to_string()].into_iter().chain(words).collect(),
        )
    }

    /// A vocabulary with exactly these tokens, id `i` for `tokens[i]`: how a saved one is
    /// restored. Panics unless `tokens` starts with `<pad>` and `<unk>` and holds no token
    /// twice.
    pub fn from_tokens(tokens: Vec<String>) -> Vocab {
        if let Err(reason) = check_tokens(&tokens) {
            panic!("Vocab::from_tokens: {reason}");
        }
        Vocab::from_parts(tokens)
    }

    fn from_parts(tokens: Vec<String>) -> Vocab {
        let ids = tokens.iter().enumerate().map(|(id, token)| (token.clone(), id as i32)).collect();
        Vocab { tokens, ids }
    }

    /// Writes the tokens to `path`, one per line in id order, so the ids a model was
    /// trained with can be restored by [`Vocab::read`].
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut text = self.tokens.join("\n");
        text.push('\n');
        std::fs::write(path, text).map_err(|source| Error::Io { path: path.display().to_string(), source })
    }

    /// Reads a vocabulary written by [`Vocab::write`]: line `i + 1` holds the token of id
    /// `i`. [`Error::Format`] when the first two lines are not `<pad>` and `<unk>`, a line
    /// is empty or holds whitespace, or a token appears twice.
    pub fn read(path: impl AsRef<Path>) -> Result<Vocab> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: name.clone(), source })?;
        let tokens: Vec<String> = text.lines().map(str::to_string).collect();
        for (i, token) in tokens.iter().enumerate() {
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                let reason = format!("line {}: '{token}' is not a token (empty or with whitespace)", i + 1);
                return Err(Error::Format { path: name, reason });
            }
        }
        check_tokens(&tokens).map_err(|reason| Error::Format { path: name, reason })?;
        Ok(Vocab::from_parts(tokens))
    }

    /// The number of tokens, `<pad>` and `<unk>` included: the `num_embeddings` of the
    /// embedding table that ids from this vocabulary index.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: a vocabulary holds at least `<pad>` and `<unk>`.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of `token`, or [`Vocab::UNK`] when the vocabulary does not hold it. The
    /// token is looked up as given; [`Vocab::encode`] tokenizes a text first.
    pub fn id(&self, token: &str) -> i32 {
        self.get(token).unwrap_or(Vocab::UNK)
    }

    /// The id of `token`, or `None` when the vocabulary does not hold it.
    pub fn get(&self, token: &str) -> Option<i32> {
        self.ids.get(token).copied()
    }

    /// The token of `id`. Panics when `id` is not in `0..len()`.
    pub fn token(&self, id: i32) -> &str {
        assert!(
            (0..self.len() as i64).contains(&(id as i64)),
            "Vocab::token: id {id} is outside the vocabulary's 0..{}",
            self.len()
        );
        &self.tokens[id as usize]
    }

    /// All tokens, in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The ids of the tokens of `text` ([`tokenize`]), unknown words as [`Vocab::UNK`];
    /// empty when the text has no tokens.
    pub fn encode(&self, text: &str) -> Vec<i32> {
        tokenize(text).iter().map(|token| self.id(token)).collect()
    }

    /// The tokens of `ids`, joined by spaces: a readable view of an encoded text.
    pub fn decode(&self, ids: &[i32]) -> String {
        ids.iter().map(|&id| self.token(id)).collect::<Vec<_>>().join(" ")
    }
}

/// Why `tokens` cannot be a vocabulary's token list, if it cannot.
fn check_tokens(tokens: &[String]) -> std::result::Result<(), String> {
    if tokens.len() < 2 || tokens[0] != Vocab::PAD_TOKEN || tokens[1] != Vocab::UNK_TOKEN {
        return Err(format!(
            "a vocabulary starts with '{}' (id 0) and '{}' (id 1), got {:?}",
            Vocab::PAD_TOKEN,
            Vocab::UNK_TOKEN,
            &tokens[..tokens.len().min(2)]
        ));
    }
    let mut first_seen = HashMap::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        if let Some(first) = first_seen.insert(token.as_str(), id) {
            return Err(format!("token '{token}' appears twice, as ids {first} and {id}"));
        }
    }
    Ok(())
}

// ---- padded batches ----

/// One batch of encoded texts, from a [`TextLoader`].
#[derive(Debug)]
pub struct TextBatch {
    /// Token ids `[B, T]`, `i32`: row `b` holds text `b`'s `lengths[b]` ids, then
    /// [`Vocab::PAD`] up to `T`, the longest length in the batch.
    pub tokens: Tensor,
    /// The number of tokens of each text (at least 1), for `forward_with_lengths`.
    pub lengths: Vec<usize>,
    /// The labels `[B]`, `f32`.
    pub labels: Tensor,
}

/// Cuts a [`TextDataset`] into padded [`TextBatch`]es on a device, in order or in a fresh
/// shuffled order each epoch, as [`DataLoader`](super::DataLoader) does for fixed-shape
/// samples (the same seeded shuffle: epoch `e`'s order depends only on the seed and `e`).
///
/// Every text is encoded once, when the loader is made. A text without tokens becomes a
/// single `<unk>` (length 1), since a recurrent layer needs at least one step per
/// sequence; with [`max_len`](TextLoader::max_len), longer texts keep their first tokens.
/// Each batch is padded to its own longest text, not to the data set's, so batches of short
/// texts cost little.
#[derive(Clone, Debug)]
pub struct TextLoader {
    sequences: Vec<Vec<i32>>,
    labels: Vec<f32>,
    batch_size: usize,
    shuffle_seed: Option<u64>,
    drop_last: bool,
    max_len: Option<usize>,
    next_epoch: u64,
}

impl TextLoader {
    /// A loader over `data` encoded with `vocab`, in order, keeping the last partial batch.
    /// Panics when `batch_size` is zero.
    pub fn new(data: &TextDataset, vocab: &Vocab, batch_size: usize) -> TextLoader {
        assert!(batch_size > 0, "TextLoader::new: batch_size must be at least 1");
        let sequences = data
            .texts()
            .map(|text| {
                let ids = vocab.encode(text);
                if ids.is_empty() {
                    vec![Vocab::UNK]
                } else {
                    ids
                }
            })
            .collect();
        TextLoader {
            sequences,
            labels: data.labels().collect(),
            batch_size,
            shuffle_seed: None,
            drop_last: false,
            max_len: None,
            next_epoch: 0,
        }
    }

    /// Visits the texts in a new random order each epoch, drawn from `seed`.
    #[must_use = "shuffle returns the changed loader"]
    pub fn shuffle(mut self, seed: u64) -> TextLoader {
        self.shuffle_seed = Some(seed);
        self
    }

    /// With `true`, leaves out the last batch of an epoch when it would be smaller than
    /// the batch size (as PyTorch's `drop_last`).
    #[must_use = "drop_last returns the changed loader"]
    pub fn drop_last(mut self, drop_last: bool) -> TextLoader {
        self.drop_last = drop_last;
        self
    }

    /// Cuts every text to its first `max_len` tokens (at least 1), bounding the cost of a
    /// batch that holds one very long text. Panics when `max_len` is zero.
    #[must_use = "max_len returns the changed loader"]
    pub fn max_len(mut self, max_len: usize) -> TextLoader {
        assert!(max_len > 0, "TextLoader::max_len: max_len must be at least 1");
        self.max_len = Some(max_len);
        self
    }

    /// The number of texts.
    pub fn len(&self) -> usize {
        self.sequences.len()
    }

    /// Whether there are no texts.
    pub fn is_empty(&self) -> bool {
        self.sequences.is_empty()
    }

    /// The number of texts per batch (the last one may hold fewer).
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Text `index` as ids (after [`max_len`](TextLoader::max_len)) and its label. Panics
    /// when out of range.
    pub fn get(&self, index: usize) -> (&[i32], f32) {
        assert!(index < self.len(), "TextLoader::get: index {index} is out of range for {} texts", self.len());
        let ids = &self.sequences[index];
        (&ids[..self.max_len.map_or(ids.len(), |max| max.min(ids.len()))], self.labels[index])
    }

    /// Batches per epoch: `len / batch_size`, rounded up unless `drop_last`.
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.len() / self.batch_size
        } else {
            self.len().div_ceil(self.batch_size)
        }
    }

    /// Texts per epoch: every text, or with `drop_last` those of the full batches.
    pub fn num_samples(&self) -> usize {
        if self.drop_last {
            self.num_batches() * self.batch_size
        } else {
            self.len()
        }
    }

    /// The number of the epoch the next call to [`epoch`](TextLoader::epoch) serves.
    pub fn next_epoch(&self) -> u64 {
        self.next_epoch
    }

    /// Makes the next call to [`epoch`](TextLoader::epoch) serve epoch `epoch`, to resume
    /// a run.
    pub fn set_epoch(&mut self, epoch: u64) {
        self.next_epoch = epoch;
    }

    /// The batches of the next epoch on `device`, then counts that epoch as served.
    pub fn epoch(&mut self, device: &Device) -> TextBatches<'_> {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        self.batches(epoch, device)
    }

    /// The batches of epoch `epoch` on `device`, without touching the epoch counter.
    pub fn batches(&self, epoch: u64, device: &Device) -> TextBatches<'_> {
        TextBatches { loader: self, order: self.order(epoch), next: 0, device: device.clone() }
    }

    /// The text indices of epoch `epoch` in the order the batches visit them: `0..len`
    /// without shuffling.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        if let Some(seed) = self.shuffle_seed {
            Generator::for_epoch(seed, epoch).shuffle(&mut order);
        }
        order
    }

    /// The padded batch of the texts `indices`.
    fn batch(&self, indices: &[usize], device: &Device) -> TextBatch {
        let rows: Vec<(&[i32], f32)> = indices.iter().map(|&i| self.get(i)).collect();
        let lengths: Vec<usize> = rows.iter().map(|(ids, _)| ids.len()).collect();
        let steps = lengths.iter().copied().max().unwrap_or(0);
        let mut tokens = vec![Vocab::PAD; rows.len() * steps];
        for (row, (ids, _)) in tokens.chunks_exact_mut(steps.max(1)).zip(&rows) {
            row[..ids.len()].copy_from_slice(ids);
        }
        let labels: Vec<f32> = rows.iter().map(|&(_, label)| label).collect();
        TextBatch {
            tokens: Tensor::from_slice(&tokens, &[rows.len(), steps], device),
            lengths,
            labels: Tensor::from_slice(&labels, &[rows.len()], device),
        }
    }
}

/// The batches of one epoch, from [`TextLoader::epoch`].
pub struct TextBatches<'a> {
    loader: &'a TextLoader,
    order: Vec<usize>,
    /// Position in `order` of the next batch's first text.
    next: usize,
    device: Device,
}

impl Iterator for TextBatches<'_> {
    type Item = TextBatch;

    fn next(&mut self) -> Option<TextBatch> {
        let size = (self.order.len() - self.next).min(self.loader.batch_size);
        if size == 0 || (self.loader.drop_last && size < self.loader.batch_size) {
            return None;
        }
        let batch = self.loader.batch(&self.order[self.next..self.next + size], &self.device);
        self.next += size;
        Some(batch)
    }

    /// Skips `n` batches without padding or uploading them (what `skip` and a resumed run
    /// use).
    fn nth(&mut self, n: usize) -> Option<TextBatch> {
        self.next = self.next.saturating_add(n.saturating_mul(self.loader.batch_size)).min(self.order.len());
        self.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = self.order.len() - self.next;
        let batches = if self.loader.drop_last {
            remaining / self.loader.batch_size
        } else {
            remaining.div_ceil(self.loader.batch_size)
        };
        (batches, Some(batches))
    }
}

impl ExactSizeIterator for TextBatches<'_> {}
