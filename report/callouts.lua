-- Callouts (::: {.callout-KIND title="..."}) in the PDF, for either renderer: the report's Typst function
-- `report-callout` (typst-style.typ) draws each one, so both PDFs show the same box. (Quarto 1.7's own
-- Typst callout imports an icon package that Typst downloads from its package registry, which a machine
-- without that network cannot compile.) The HTML keeps each renderer's own callout.
local KINDS = { note = true, tip = true, warning = true, important = true, caution = true }

local function typst(inlines)
  return pandoc.write(pandoc.Pandoc({ pandoc.Plain(inlines) }), "typst"):gsub("%s+$", "")
end

function Div(div)
  if FORMAT ~= "typst" then
    return nil
  end
  for _, class in ipairs(div.classes) do
    local kind = class:match("^callout%-(%a+)$")
    if kind and KINDS[kind] then
      local title = div.attributes.title
      local inlines = title and pandoc.utils.blocks_to_inlines(pandoc.read(title, "markdown").blocks)
        or { pandoc.Str(kind:sub(1, 1):upper() .. kind:sub(2)) }
      local blocks = pandoc.List({
        pandoc.RawBlock("typst", string.format('#report-callout(kind: "%s", title: [%s])[', kind, typst(inlines))),
      })
      blocks:extend(div.content)
      blocks:insert(pandoc.RawBlock("typst", "]"))
      return blocks
    end
  end
end
