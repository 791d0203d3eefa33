// Microphone capture: mono float at the context rate -> 16 kHz PCM16, posted in 20 ms frames.
class MicCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ratio = sampleRate / 16000;  // `sampleRate` is the AudioWorklet global
    this.acc = 0; this.accN = 0; this.pos = 0;
    this.frame = new Int16Array(320); this.fill = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const ch = input[0];
    for (let i = 0; i < ch.length; i++) {
      // Box-filter decimation: average the input samples that fall into one output sample.
      this.acc += ch[i]; this.accN++; this.pos += 1;
      if (this.pos >= this.ratio) {
        this.pos -= this.ratio;
        const v = Math.max(-1, Math.min(1, this.acc / this.accN));
        this.acc = 0; this.accN = 0;
        this.frame[this.fill++] = v < 0 ? v * 0x8000 : v * 0x7fff;
        if (this.fill === this.frame.length) {
          this.port.postMessage(this.frame.buffer, [this.frame.buffer]);
          this.frame = new Int16Array(320); this.fill = 0;
        }
      }
    }
    return true;
  }
}
registerProcessor("mic-capture", MicCapture);
