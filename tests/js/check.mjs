// One named check of the official JavaScript SDKs, unchanged, against a live flashbulb server:
//   node check.mjs NAME   (FLASHBULB_URL, FLASHBULB_KEY and FLASHBULB_PHOTO, a PNG, in the environment)
// Prints what it saw as JSON on the last line and exits 0, or throws (exit 1) saying what differed.
import { readFileSync } from "node:fs";
import { GoogleGenAI, createPartFromUri } from "@google/genai";
import OpenAI, { toFile } from "openai";

const base = process.env.FLASHBULB_URL;
const key = process.env.FLASHBULB_KEY;
const photoPath = process.env.FLASHBULB_PHOTO;
const photo = readFileSync(photoPath);
const photoSize = pngSize(photo);

const genai = new GoogleGenAI({ apiKey: key, httpOptions: { baseUrl: base } });
const openai = new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0 });

function pngSize(bytes) {
  const buffer = Buffer.from(bytes);
  if (buffer.toString("latin1", 1, 4) !== "PNG") throw new Error("not a PNG");
  return [buffer.readUInt32BE(16), buffer.readUInt32BE(20)];
}

function expect(condition, what) {
  if (!condition) throw new Error(what);
}

function imagesOf(response) {
  const parts = response.candidates?.[0]?.content?.parts ?? [];
  return parts.filter((p) => p.inlineData).map((p) => pngSize(Buffer.from(p.inlineData.data, "base64")));
}

const photoPart = { inlineData: { mimeType: "image/png", data: photo.toString("base64") } };

const checks = {
  async "genai-models-list"() {
    const names = [];
    for await (const model of await genai.models.list()) names.push(model.name);
    expect(names.includes("models/gemini-3-pro-image-preview"), `no Gemini 3 name in ${names}`);
    return names.length;
  },
  async "genai-generate-content"() {
    const response = await genai.models.generateContent({
      model: "gemini-2.5-flash-image", contents: [{ role: "user", parts: [photoPart, { text: "upscale 2x" }] }],
    });
    const [size] = imagesOf(response);
    expect(size[0] === 2 * photoSize[0] && size[1] === 2 * photoSize[1], `got ${size}`);
    expect(response.usageMetadata.candidatesTokenCount >= 1290, "no image tokens counted");
    return size;
  },
  async "genai-count-tokens"() {
    const counted = await genai.models.countTokens({
      model: "gemini-3.1-flash-image-preview", contents: [{ role: "user", parts: [photoPart, { text: "restore it" }] }],
    });
    expect(counted.totalTokens === 258 + 3, `counted ${counted.totalTokens}`);
    return counted.totalTokens;
  },
  async "genai-stream"() {
    const stream = await genai.models.generateContentStream({
      model: "flashbulb-photo", contents: [{ role: "user", parts: [photoPart, { text: "upscale 2x" }] }],
    });
    const sizes = [];
    let finish;
    for await (const chunk of stream) {
      sizes.push(...imagesOf(chunk));
      finish = chunk.candidates?.[0]?.finishReason ?? finish;
    }
    expect(sizes.length === 1 && finish === "STOP", `got ${sizes} ${finish}`);
    return sizes[0];
  },
  async "genai-image-size"() {
    const response = await genai.models.generateContent({
      model: "gemini-3-pro-image-preview", contents: [{ role: "user", parts: [photoPart, { text: "make it sharper" }] }],
      config: { imageConfig: { imageSize: "1K", aspectRatio: "16:9" } },
    });
    const [size] = imagesOf(response);
    expect(size[0] === 1344 && size[1] === 768, `got ${size}`);
    return size;
  },
  async "genai-files-upload"() {
    const file = await genai.files.upload({ file: new Blob([photo], { type: "image/png" }), config: { mimeType: "image/png" } });
    const response = await genai.models.generateContent({
      model: "flashbulb-photo",
      contents: [{ role: "user", parts: [createPartFromUri(file.uri, file.mimeType), { text: "upscale 2x" }] }],
    });
    const [size] = imagesOf(response);
    expect(size[0] === 2 * photoSize[0], `got ${size}`);
    return file.name;
  },
  async "openai-models-list"() {
    const ids = [];
    for await (const model of openai.models.list()) ids.push(model.id);
    expect(ids.includes("gpt-image-2") && ids.includes("flashbulb-photo"), `got ${ids}`);
    return ids.length;
  },
  async "openai-images-edit"() {
    const result = await openai.images.edit({
      model: "gpt-image-1", image: await toFile(photo, "photo.png", { type: "image/png" }), prompt: "make it brighter",
    });
    const size = pngSize(Buffer.from(result.data[0].b64_json, "base64"));
    expect(size[0] === photoSize[0] && result.size === `${size[0]}x${size[1]}`, `got ${size} ${result.size}`);
    return size;
  },
  async "openai-refusal-is-a-400"() {
    try {
      await openai.images.generate({ model: "flashbulb-photo", prompt: "a cat on a skateboard" });
    } catch (error) {
      expect(error instanceof OpenAI.BadRequestError && error.code === "image_generation_failed", `got ${error}`);
      return error.code;
    }
    throw new Error("a text-only prompt on the photo model was answered");
  },
  async "openai-edit-stream"() {
    const stream = await openai.images.edit({
      model: "flashbulb-photo", image: await toFile(photo, "photo.png", { type: "image/png" }), prompt: "upscale 2x",
      stream: true, partial_images: 1,
    });
    const kinds = [];
    let last;
    for await (const event of stream) {
      kinds.push(event.type);
      last = event;
    }
    expect(kinds.at(-1) === "image_edit.completed", `got ${kinds}`);
    const size = pngSize(Buffer.from(last.b64_json, "base64"));
    expect(size[0] === 2 * photoSize[0], `got ${size}`);
    return kinds;
  },
  async "openai-responses-image-tool"() {
    const response = await openai.responses.create({
      model: "gpt-5",
      input: [{ role: "user", content: [
        { type: "input_text", text: "make it brighter" },
        { type: "input_image", image_url: `data:image/png;base64,${photo.toString("base64")}` },
      ] }],
      tools: [{ type: "image_generation", model: "flashbulb-photo" }],
    });
    const call = response.output.find((item) => item.type === "image_generation_call");
    const size = pngSize(Buffer.from(call.result, "base64"));
    expect(size[0] === photoSize[0] && size[1] === photoSize[1], `got ${size}`);
    return response.id;
  },

  async "openai-files-then-responses-file-id"() {
    const file = await openai.files.create({ file: await toFile(photo, "photo.png", { type: "image/png" }), purpose: "vision" });
    expect(file.id.startsWith("file-") && file.bytes === photo.length, `got ${JSON.stringify(file)}`);
    const response = await openai.responses.create({
      model: "gpt-5",
      input: [{ role: "user", content: [
        { type: "input_text", text: "make it brighter" },
        { type: "input_image", file_id: file.id },
      ] }],
      tools: [{ type: "image_generation", model: "flashbulb-photo" }],
    });
    const call = response.output.find((item) => item.type === "image_generation_call");
    const size = pngSize(Buffer.from(call.result, "base64"));
    expect(size[0] === photoSize[0] && size[1] === photoSize[1], `got ${size}`);
    const deleted = await openai.files.delete(file.id);
    expect(deleted.deleted === true, `got ${JSON.stringify(deleted)}`);
    return file.id;
  },
};

const name = process.argv[2];
if (!checks[name]) throw new Error(`no check named ${name}; checks: ${Object.keys(checks).join(", ")}`);
console.log(JSON.stringify({ check: name, saw: await checks[name]() }));
