-- The offline renderer's HTML callouts (::: {.callout-KIND title="..."}), drawn as Quarto draws them: a
-- box in the kind's colour (style.css), a title bar, then the body. The title is text, not an attribute.
local KINDS = { note = "Note", tip = "Tip", warning = "Warning", important = "Important", caution = "Caution" }

function Div(div)
  for _, class in ipairs(div.classes) do
    local kind = class:match("^callout%-(%a+)$")
    if kind and KINDS[kind] then
      local title = div.attributes.title
      local inlines = title and pandoc.utils.blocks_to_inlines(pandoc.read(title, "markdown").blocks)
        or { pandoc.Str(KINDS[kind]) }
      return pandoc.Div({
        pandoc.Div({ pandoc.Plain(inlines) }, pandoc.Attr("", { "callout-title" })),
        pandoc.Div(div.content, pandoc.Attr("", { "callout-body" })),
      }, pandoc.Attr(div.identifier, { "callout", "callout-" .. kind }))
    end
  end
end
